// The rotary tables (cos, sin) of a decode step as the module path computes them (modeling/rope.py
// `rotary_tables`), without the half-dozen ATen calls that cost more than the values once a decode step's weights
// have streamed through the caches:
//   angle = float32(position) * inv_freq   (one rounding, as torch's float32 product)
//   halves [f0 .. fn, f0 .. fn], or interleaved [f0, f0, f1, f1, ...]
//   cos, sin through MKL's vector functions vsCos / vsSin, which ATen's float32 cos and sin call in builds with
//   MKL (the same bits: checked against at::cos / at::sin once per process)
//   * attention_scaling where it is not 1, then the cast to the output dtype.
// Without MKL's functions (another build) or where the check fails, `available()` is false and the caller keeps
// torch's ops.
#pragma once
#include <torch/extension.h>

#include <cstring>
#include <mutex>
#include <vector>

extern "C" {
// MKL's vector math, exported by libtorch_cpu in builds with MKL; weak, so a build without them still loads
void vsCos(int n, const float* a, float* r) __attribute__((weak));
void vsSin(int n, const float* a, float* r) __attribute__((weak));
}

namespace formers_rotary {

// whether vsCos / vsSin give at::cos / at::sin bit for bit here (asked once)
inline bool available() {
  static std::once_flag once;
  static bool same = false;
  std::call_once(once, [] {
    if (vsCos == nullptr || vsSin == nullptr) return;
    // every angle a 128-wide head meets at positions 0 .. 8191 with base 10000, and a spread of larger ones
    const at::Tensor pos = at::arange(0, 8192, at::TensorOptions().dtype(at::kFloat));
    const at::Tensor inv = at::pow(10000.0, at::arange(0, 128, 2, at::TensorOptions().dtype(at::kFloat)) / -128.0);
    const at::Tensor spread = at::linspace(-3e5, 3e5, 40001, at::TensorOptions().dtype(at::kFloat));
    const at::Tensor angles = at::cat({at::outer(pos, inv).flatten(), spread}).contiguous();
    const int n = static_cast<int>(angles.numel());
    std::vector<float> got(n);
    same = true;
    for (int which = 0; which < 2 && same; ++which) {
      (which == 0 ? vsCos : vsSin)(n, angles.data_ptr<float>(), got.data());
      const at::Tensor want = (which == 0 ? at::cos(angles) : at::sin(angles)).contiguous();
      same = std::memcmp(got.data(), want.data_ptr<float>(), n * sizeof(float)) == 0;
    }
  });
  return same;
}

// (cos, sin) [R..., 2 * half] of dtype `dtype` for positions [R...] (integers) and inv_freq [half] (float32)
inline std::vector<at::Tensor> tables(const at::Tensor& positions, const at::Tensor& inv_freq, double scaling,
                                      at::ScalarType dtype, bool interleaved) {
  const at::Tensor p = positions.contiguous(), inv = inv_freq.contiguous();
  const int64_t rows = p.numel(), half = inv.numel(), width = 2 * half;
  std::vector<float> position(rows), angles(rows * width), c(rows * width), s(rows * width);
  AT_DISPATCH_INTEGRAL_TYPES(p.scalar_type(), "rotary_tables", [&] {
    for (int64_t r = 0; r < rows; ++r) position[r] = static_cast<float>(p.data_ptr<scalar_t>()[r]);
  });
  const float* f = inv.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < half; ++i) {
      const float a = position[r] * f[i];
      float* row = angles.data() + r * width;
      if (interleaved) row[2 * i] = row[2 * i + 1] = a;
      else row[i] = row[i + half] = a;
    }
  vsCos(static_cast<int>(angles.size()), angles.data(), c.data());
  vsSin(static_cast<int>(angles.size()), angles.data(), s.data());
  std::vector<int64_t> shape(positions.sizes().begin(), positions.sizes().end());
  shape.push_back(width);
  std::vector<at::Tensor> out;
  for (std::vector<float>* values : {&c, &s}) {
    if (scaling != 1.0)
      for (float& v : *values) v *= static_cast<float>(scaling);
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "rotary_tables", [&] {
      scalar_t* y = t.data_ptr<scalar_t>();
      for (size_t i = 0; i < values->size(); ++i) y[i] = static_cast<scalar_t>((*values)[i]);
    });
    out.push_back(t);
  }
  return out;
}

}  // namespace formers_rotary
