// One decoder layer for one new token per row (decoding), Llama's wiring, in a single call:
//   h += o_proj(attention(rope(q), rope(k) -> cache, v -> cache));  h += down(silu(gate(n)) * up(n)),
// with n = RMSNorm(h) before each half. Every step that torch would round to the activation dtype is
// rounded here at the same place (`rnd`), and the sums whose order decides a rounding (linears, the norms'
// mean of squares, attention, SiLU's exp) reproduce torch's order (bf16_match.h, attention_bf16.h,
// torch_steps.h; each checked against torch on the machine, torch's own call where it differs), so bfloat16
// models equal the module path bit for bit; float32 differs from torch only by summation order. The
// keys/values are written into the caller's cache buffers [B, Hkv, capacity, D] at position `pos`; attention
// reads positions 0..pos.
#pragma once
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attention.h"
#include "attention_bf16.h"
#include "bf16_match.h"
#include "gemv.h"
#include "quant.h"
#include "torch_steps.h"

namespace formers_decode {

using formers_gemv::BFloat16;

template <bool BF16>
inline float rnd(float v) {
  if constexpr (BF16) return static_cast<float>(BFloat16(v));
  return v;
}

inline const float* fdata(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// t's values as float32, converted here (an ATen cast per small tensor per layer cost more than the conversion)
inline std::vector<float> floats_of(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  std::vector<float> out(c.numel());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, c.scalar_type(), "floats_of", [&] {
    const scalar_t* x = c.data_ptr<scalar_t>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(x[i]);
  });
  return out;
}

// torchao's int8_dynamic_activation_int8_weight for float32 rows x [M, K] and int8 weights W_i with row scales s_i
// (QuantizedLinear._dynamic_int8_linear, step for step): each row quantized to integers q in [-127, 127] with scale
// r = max(max |x| / 127, 1e-5), the integer products summed exactly, then y = (sum * r) * s_i + b_i. The sums come
// from the int8 GEMV on q as float32 where no partial sum can leave float32's exact integers (128 * sum |q| <= 2^24
// for every row), else from int32 sums; both give the same integers.
inline void dynamic_int8_into(const float* x, int64_t M, int64_t K, const std::vector<at::Tensor>& ws,
                              const std::vector<const float*>& biases, const std::vector<float*>& outs,
                              const std::vector<at::Tensor>& scales) {
  std::vector<float> q(M * K), row_scale(M);
  bool exact_in_float = true;
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * K;
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(row[k]));
    row_scale[m] = std::max(amax / 127.f, 1e-5f);
    const float inverse = 1.f / row_scale[m];
    float total = 0.f;
    for (int64_t k = 0; k < K; ++k) {
      q[m * K + k] = std::min(std::max(std::nearbyint(row[k] * inverse), -127.f), 127.f);  // round half to even
      total += std::fabs(q[m * K + k]);
    }
    exact_in_float = exact_in_float && !(total * 128.f > 16777216.f);  // (a NaN input stays on the float path: NaN out)
  }
  std::vector<formers_gemv::Job> jobs;
  int64_t chunks = 0, bytes = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const int64_t N = ws[i].size(0);
    jobs.push_back({ws[i].data_ptr(), nullptr, outs[i], N, chunks});
    chunks += (N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
    bytes += ws[i].numel();
  }
  if (exact_in_float) {
    formers_gemv::run<int8_t, float>(q.data(), M, K, jobs, chunks, bytes);
  } else {
    for (size_t i = 0; i < ws.size(); ++i) {
      const int8_t* w = ws[i].data_ptr<int8_t>();
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < jobs[i].N; ++n) {
          int32_t sum = 0;
          for (int64_t k = 0; k < K; ++k) sum += static_cast<int32_t>(q[m * K + k]) * w[n * K + k];
          outs[i][m * jobs[i].N + n] = static_cast<float>(sum);
        }
    }
  }
  for (size_t i = 0; i < ws.size(); ++i) {
    const int64_t N = jobs[i].N;
    const float* s = fdata(scales[i]);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float& y = outs[i][m * N + n];
        y = y * row_scale[m] * s[n];
        if (biases[i] != nullptr) y += biases[i][n];
      }
  }
}

// y[M, N_i] (float32) = x[M, K] @ (W_i * s_i)^T + b_i for weights of one dtype; s_i: the float32 scale per output
// row of an int8 weight (QuantizedLinear's int8 schemes), undefined for the other kinds; `dynamic`: the int8
// weights take int8-quantized activations (dynamic_int8_into)
inline void gemv_into(const float* x, int64_t M, int64_t K, const std::vector<at::Tensor>& ws,
                      const std::vector<at::Tensor>& biases_f, const std::vector<float*>& outs,
                      const std::vector<at::Tensor>& scales, bool dynamic = false) {
  std::vector<const float*> biases;
  for (const auto& b : biases_f) biases.push_back(fdata(b));
  if (ws[0].scalar_type() == at::kByte) return formers_quant::blocks_into(x, M, K, ws, biases, outs);  // GGUF blocks
  if (dynamic) return dynamic_int8_into(x, M, K, ws, biases, outs, scales);
  // bfloat16 weights come only with bfloat16 activations (decode_layer checks), and every x given here was
  // rounded to bfloat16 first (rms_norm, the attention output, the gated product): torch's sums of those
  if (ws[0].scalar_type() == at::kBFloat16) return formers_bf16::linear<float>(x, M, K, ws, biases, outs);
  std::vector<formers_gemv::Job> jobs;
  int64_t chunks = 0, bytes = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const int64_t N = ws[i].size(0);
    jobs.push_back({ws[i].data_ptr(), biases[i], outs[i], N, chunks, fdata(scales[i])});
    chunks += (N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
    bytes += ws[i].numel() * ws[i].element_size();
  }
  if (ws[0].scalar_type() == at::kChar) return formers_gemv::run<int8_t, float>(x, M, K, jobs, chunks, bytes);
  formers_gemv::run<float, float>(x, M, K, jobs, chunks, bytes);
}

inline at::Tensor float_view(const float* x, std::vector<int64_t> shape) {
  return at::from_blob(const_cast<float*>(x), shape, at::TensorOptions().dtype(at::kFloat));
}

// RMSNorm of M rows. bfloat16 follows the module path op for op, its mean of squares summed in the order of torch's
// reduction (torch_steps.h, or torch's own call where that check fails), so the result equals the module path's
// bit for bit.
template <bool BF16>
void rms_norm(const float* x, const float* w, double eps, int64_t M, int64_t C, float* y) {
  std::vector<float> mean_sq(M);
  if (BF16 && formers_bf16::reproduces_torch_mean_squares(M, C)) {
    formers_bf16::mean_squares_like_torch(x, M, C, mean_sq.data());
  } else if (BF16) {
    const at::Tensor v = float_view(x, {M, C}).pow(2).mean(-1);
    std::copy(v.data_ptr<float>(), v.data_ptr<float>() + M, mean_sq.begin());
  } else {
    for (int64_t m = 0; m < M; ++m) {
      float sq = 0.f;
      for (int64_t c = 0; c < C; ++c) sq += x[m * C + c] * x[m * C + c];
      mean_sq[m] = sq / C;
    }
  }
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * C;
    const float r = 1.f / std::sqrt(mean_sq[m] + static_cast<float>(eps));
    for (int64_t c = 0; c < C; ++c)
      y[m * C + c] = BF16 ? rnd<true>(w[c] * rnd<true>(row[c] * r)) : row[c] * r * w[c];
  }
}

// x [heads, D] rotated in place by rotate-half rope with cos/sin [D]
template <bool BF16>
void rope(float* x, int64_t heads, int64_t D, const float* cos, const float* sin) {
  const int64_t half = D / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * D;
    for (int64_t d = 0; d < half; ++d) {
      const float a = v[d], b = v[d + half];
      v[d] = rnd<BF16>(rnd<BF16>(a * cos[d]) + rnd<BF16>(-b * sin[d]));
      v[d + half] = rnd<BF16>(rnd<BF16>(b * cos[d + half]) + rnd<BF16>(a * sin[d + half]));
    }
  }
}

template <typename T>
inline void store_row(T* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(src[i]);
}

struct Layer {
  std::vector<float> ln1, ln2;          // float32 copies of the norm weights
  std::vector<at::Tensor> qkv, qkv_b;   // weights and float32 biases (undefined when absent)
  at::Tensor wo, bo, wg, wu, wd;
  std::vector<at::Tensor> qkv_s;        // float32 row scales of int8 weights (undefined for the other kinds)
  at::Tensor so, sg, su, sd;
  bool qkv_dynamic, o_dynamic, gate_up_dynamic, down_dynamic;  // int8 weights with int8-quantized activations
  double eps1, eps2;
  int64_t H, Hkv, D;
  double scale;
};

// The rotary tables of one decode step as float32: one [D] row for every batch row (row_stride 0) or one per row
struct Rotary {
  std::vector<float> cos, sin;
  int64_t row_stride;
};

inline Rotary rotary_of(const at::Tensor& cos, const at::Tensor& sin, int64_t D) {
  return {floats_of(cos), floats_of(sin), cos.size(0) == 1 ? 0 : D};
}

// The attention half on the rows h [B, C] (float32 holding the layer input's values), in place:
// h += o_proj(attention(RMSNorm(h))). (layer_step below and the mixture-of-experts layer of moe.h share it.)
template <typename T>
void attention_half(std::vector<float>& h, int64_t B, const Layer& L, const Rotary& rot, at::Tensor& k_cache,
                    at::Tensor& v_cache, int64_t pos, const at::Tensor& mask) {
  constexpr bool BF = std::is_same_v<T, BFloat16>;
  const int64_t C = static_cast<int64_t>(h.size()) / B, H = L.H, Hkv = L.Hkv, D = L.D;
  const int64_t cap = k_cache.size(2);
  std::vector<float> n(B * C), q(B * H * D), k(B * Hkv * D), v(B * Hkv * D), a(B * H * D), o(B * C);
  rms_norm<BF>(h.data(), L.ln1.data(), L.eps1, B, C, n.data());
  gemv_into(n.data(), B, C, L.qkv, L.qkv_b, {q.data(), k.data(), v.data()}, L.qkv_s, L.qkv_dynamic);
  for (auto* t : {&q, &k, &v})
    for (auto& x : *t) x = rnd<BF>(x);
  const int64_t rs = rot.row_stride;
  for (int64_t b = 0; b < B; ++b) {
    rope<BF>(q.data() + b * H * D, H, D, rot.cos.data() + b * rs, rot.sin.data() + b * rs);
    rope<BF>(k.data() + b * Hkv * D, Hkv, D, rot.cos.data() + b * rs, rot.sin.data() + b * rs);
  }
  T* kc = k_cache.data_ptr<T>();
  T* vc = v_cache.data_ptr<T>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g2 = 0; g2 < Hkv; ++g2) {
      store_row(kc + ((b * Hkv + g2) * cap + pos) * D, k.data() + (b * Hkv + g2) * D, D);
      store_row(vc + ((b * Hkv + g2) * cap + pos) * D, v.data() + (b * Hkv + g2) * D, D);
    }
  if constexpr (BF) {  // torch's attention bits (attention_bf16.h)
    formers_bf16::attend(q.data(), k_cache, v_cache, mask, B, H, pos, L.scale, a.data());
  } else {
    const formers_bf16::MaskRows rows = formers_bf16::mask_rows(mask, B);
    attend<T>(q.data(), kc, vc, rows.data, rows.stride, B, H, Hkv, D, cap, pos, static_cast<float>(L.scale), a.data());
  }
  for (auto& x : a) x = rnd<BF>(x);
  gemv_into(a.data(), B, H * D, {L.wo}, {L.bo}, {o.data()}, {L.so}, L.o_dynamic);
  for (int64_t i = 0; i < B * C; ++i) h[i] = rnd<BF>(h[i] + rnd<BF>(o[i]));
}

// The whole layer on the rows h [B, C], in place; h ends holding the layer output's values (rounded to T)
template <typename T>
void layer_step(std::vector<float>& h, int64_t B, const Layer& L, const Rotary& rot, at::Tensor& k_cache,
                at::Tensor& v_cache, int64_t pos, const at::Tensor& mask) {
  constexpr bool BF = std::is_same_v<T, BFloat16>;
  const int64_t C = static_cast<int64_t>(h.size()) / B, I = formers_quant::rows_of(L.wg, C);
  std::vector<float> n(B * C), o(B * C), g(B * I), u(B * I);
  attention_half<T>(h, B, L, rot, k_cache, v_cache, pos, mask);
  // feed-forward half
  rms_norm<BF>(h.data(), L.ln2.data(), L.eps2, B, C, n.data());
  gemv_into(n.data(), B, C, {L.wg, L.wu}, {at::Tensor(), at::Tensor()}, {g.data(), u.data()}, {L.sg, L.su},
            L.gate_up_dynamic);
  if constexpr (BF) {  // torch's SiLU bits (its vector exp fixes the rounding), then the module path's product
    for (auto& x : g) x = rnd<BF>(x);
    if (formers_bf16::reproduces_torch_silu(B * I)) {
      formers_bf16::silu_like_torch(g.data(), B * I, g.data());
    } else {
      const at::Tensor act = at::silu(float_view(g.data(), {B, I}).to(at::kBFloat16)).to(at::kFloat);
      std::copy(act.data_ptr<float>(), act.data_ptr<float>() + B * I, g.begin());
    }
    for (int64_t i = 0; i < B * I; ++i) g[i] = rnd<BF>(g[i] * rnd<BF>(u[i]));
  } else {
    for (int64_t i = 0; i < B * I; ++i) g[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
  }
  gemv_into(g.data(), B, I, {L.wd}, {at::Tensor()}, {o.data()}, {L.sd}, L.down_dynamic);
  for (int64_t i = 0; i < B * C; ++i) h[i] = rnd<BF>(h[i] + rnd<BF>(o[i]));
}

// rows [B, C] of float32 values -> a contiguous tensor of `like`'s shape and dtype T
template <typename T>
at::Tensor tensor_of(const std::vector<float>& rows, const at::Tensor& like) {
  at::Tensor out = at::empty_like(like, like.options().memory_format(at::MemoryFormat::Contiguous));
  store_row(out.data_ptr<T>(), rows.data(), static_cast<int64_t>(rows.size()));
  return out;
}

template <typename T>
at::Tensor run_layer(const at::Tensor& hidden, const Layer& L, const at::Tensor& cos, const at::Tensor& sin,
                     at::Tensor& k_cache, at::Tensor& v_cache, int64_t pos, const at::Tensor& mask) {
  std::vector<float> h = floats_of(hidden);
  layer_step<T>(h, hidden.size(0), L, rotary_of(cos, sin, L.D), k_cache, v_cache, pos, mask);
  return tensor_of<T>(h, hidden);
}

}  // namespace formers_decode
