// Two small steps of the bfloat16 module path computed as torch's CPU kernels compute them, without ATen calls
// per layer (a dispatch each, ~10 per layer):
//  - SiLU: in float32, x / (1 + exp(-x)) with ATen's vector exp (Sleef's, 1 ulp) over whole stretches of two
//    bfloat16 vectors (its loop takes two per turn: 64 values with AVX-512, 32 with AVX2), the rest with std::exp,
//    each result rounded to bfloat16;
//  - RMSNorm's mean of squares, x.pow(2).mean(-1): squares, torch's sum of a contiguous row (below), / n.
// Each is compared with torch once per process (`reproduces_torch_*`); where it differs, or where torch would
// split the work across threads, the caller keeps torch's call.
#pragma once
#include <torch/extension.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <ATen/cpu/vec/vec.h>
#endif

#include "bf16_match.h"
#include "gemv.h"

namespace formers_bf16 {

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
constexpr bool kTorchSteps = true;

// y[i] = bfloat16(silu(x[i])) for n values x that hold bfloat16 values (as float32); y may be x
inline void silu_like_torch(const float* x, int64_t n, float* y) {
  using V = at::vec::Vectorized<float>;
  const V one(1.f);
  const int64_t stretch = 2 * at::vec::Vectorized<BFloat16>::size(), whole = n - n % stretch;
  for (int64_t i = 0; i < whole; i += V::size()) {
    const V v = V::loadu(x + i);
    alignas(64) float lanes[V::size()];
    (v / (one + v.neg().exp())).store(lanes);
    for (int j = 0; j < V::size(); ++j) y[i + j] = static_cast<float>(BFloat16(lanes[j]));
  }
  for (int64_t i = whole; i < n; ++i) y[i] = static_cast<float>(BFloat16(x[i] / (1.f + std::exp(-x[i]))));
}

inline bool reproduces_torch_silu(int64_t n) {
  if (n >= at::internal::GRAIN_SIZE) return false;  // torch would cut it into per-thread pieces
  static std::once_flag once;
  static bool same = false;
  std::call_once(once, [] {
    // every bfloat16 bit pattern (65536: the vector path), then 63 of them alone (the scalar tail)
    const at::Tensor all = at::arange(0, 65536, at::TensorOptions().dtype(at::kInt)).to(at::kShort).view(at::kBFloat16);
    const at::Tensor tail = all.narrow(0, 16000, 63).clone();
    same = true;
    for (const at::Tensor& t : {all, tail}) {
      const at::Tensor x = t.to(at::kFloat).contiguous(), want = at::silu(t).to(at::kFloat).contiguous();
      std::vector<float> got(x.numel());
      silu_like_torch(x.data_ptr<float>(), x.numel(), got.data());
      const float* w = want.data_ptr<float>();
      for (int64_t i = 0; i < x.numel(); ++i)  // NaN inputs give NaN either way (their payloads may differ)
        if (!(std::isnan(got[i]) && std::isnan(w[i])) && std::memcmp(&got[i], &w[i], sizeof(float)) != 0) same = false;
    }
  });
  return same;
}
#else
constexpr bool kTorchSteps = false;
inline void silu_like_torch(const float*, int64_t, float*) {}
inline bool reproduces_torch_silu(int64_t) { return false; }
#endif

// The sum of n >= 8 float32 values in the order of torch's CPU sum over a contiguous row: 8-lane vectors taken
// four per step into a cascade of four levels (a level passes its sums up every 16 steps), the vectors left
// over added to the first of the four, the four added in order; then the values past the last whole vector
// summed in order, and the 8 lanes added to that one by one.
inline float sum_like_torch(const float* x, int64_t n) {
  using Lanes = std::array<float, 8>;
  const auto add = [](Lanes& a, const float* v) {
    for (int l = 0; l < 8; ++l) a[l] += v[l];
  };
  const int64_t vectors = n / 8, steps = vectors / 4;
  constexpr int kLevels = 4;
  const int64_t ceil_log2 = steps <= 2 ? 1 : 64 - __builtin_clzll(static_cast<uint64_t>(steps - 1));
  const int64_t power = std::max<int64_t>(4, ceil_log2 / kLevels), step = int64_t{1} << power, mask = step - 1;
  Lanes acc[kLevels][4] = {};
  int64_t i = 0;
  while (i + step <= steps) {
    for (int64_t j = 0; j < step; ++j, ++i)
      for (int k = 0; k < 4; ++k) add(acc[0][k], x + (4 * i + k) * 8);
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < 4; ++k) {
        add(acc[j][k], acc[j - 1][k].data());
        acc[j - 1][k] = Lanes{};
      }
      if ((i & (mask << (j * power))) != 0) break;
    }
  }
  for (; i < steps; ++i)
    for (int k = 0; k < 4; ++k) add(acc[0][k], x + (4 * i + k) * 8);
  for (int j = 1; j < kLevels; ++j)
    for (int k = 0; k < 4; ++k) add(acc[0][k], acc[j][k].data());
  for (int64_t v = steps * 4; v < vectors; ++v) add(acc[0][0], x + v * 8);
  for (int k = 1; k < 4; ++k) add(acc[0][0], acc[0][k].data());
  float total = 0.f;
  for (int64_t k = vectors * 8; k < n; ++k) total += x[k];
  for (int l = 0; l < 8; ++l) total += acc[0][0][l];
  return total;
}

// mean_sq[m] = x[m].pow(2).mean(-1) for M rows of C values, as torch computes it
inline void mean_squares_like_torch(const float* x, int64_t M, int64_t C, float* mean_sq) {
  std::vector<float> squares(C);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t c = 0; c < C; ++c) squares[c] = x[m * C + c] * x[m * C + c];
    mean_sq[m] = sum_like_torch(squares.data(), C) / static_cast<float>(C);
  }
}

inline bool reproduces_torch_mean_squares(int64_t M, int64_t C) {
  if (C < 8 || M * C >= at::internal::GRAIN_SIZE) return false;  // torch's other loops, or split across threads
  static std::mutex lock;
  static std::map<int64_t, bool> found;
  std::lock_guard<std::mutex> hold(lock);
  const auto hit = found.find(C);
  if (hit != found.end()) return hit->second;
  const at::Tensor x = (probe_values({3, C}, 21).to(at::kFloat) * probe_values({3, C}, 22).to(at::kFloat).exp()).contiguous();
  const at::Tensor want = x.pow(2).mean(-1).contiguous();
  std::vector<float> got(3);
  mean_squares_like_torch(x.data_ptr<float>(), 3, C, got.data());
  return found[C] = std::memcmp(got.data(), want.data_ptr<float>(), 3 * sizeof(float)) == 0;
}

}  // namespace formers_bf16
