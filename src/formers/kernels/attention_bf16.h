// bfloat16 decode attention that equals torch's at::scaled_dot_product_attention bit for bit, at a fraction of
// its cost on CPUs where torch's products take MKL's reference path (AMD EPYC: ~1 us per cached key per 9 heads).
//
// torch's CPU flash-attention kernel, per (row, head) and per block of 512 keys, found by experiment on this
// project's machines (torch 2.13, MKL 2024.2, one MKL thread as inside torch's parallel region; the same on the
// AVX-512 and the AVX2 kind, with ATen's vectors of 16 or 8 lanes: "16 keys" below is one vector of keys):
//   scores   q . k_j in float32 from exact bfloat16 products, as 4 lanes (element i in lane i mod 4) each summed
//            in order, then (lane 0 + lane 2) + (lane 1 + lane 3); times the scale, then + the mask;
//   softmax  the block's maximum (or the running one, if larger); e = exp(s - max) with ATen's fexp_u20 16 keys
//            at a time, summed as its compiled loop does (`exp_and_sum`), the leftover keys with the double exp
//            added in order; the weights rounded to bfloat16; running sum = fma(e^(old max - max), sum, block sum);
//   values   per 4 keys ((w0 v0 + w2 v2) + (w1 v1 + w3 v3)) added in order to the running output, then the
//            leftover keys last to first; a later block first scales the running output by e^(old max - max);
//   output   running output * (1 / running sum), rounded to bfloat16.
// Other CPUs, libraries or versions may sum in another order: `reproduces_torch` checks this machine once per
// shape against torch itself, and where it differs `attend` keeps torch's own call.
#pragma once
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <omp.h>
#include <optional>
#include <tuple>
#include <vector>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#endif

#include "bf16_match.h"
#include "gemv.h"
#include "pool.h"

extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));  // torch's MKL, where it has one

namespace formers_bf16 {

constexpr int64_t kTorchKeyBlock = 512;  // torch's kv_split_size for a single query position

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
// the builds whose products follow torch's (AVX512_BF16, AVX2); the order below was found on both kinds of machine
constexpr bool kTorchAttentionOrder = formers_gemv::kBf16Products;
using V = at::vec::Vectorized<float>;
constexpr int64_t kLanes = V::size();  // 16 with AVX-512, 8 with AVX2; head sizes must be a multiple

#if defined(CPU_CAPABILITY_AVX512)
// 16 bfloat16 values as float32
inline V widen(const BFloat16* p) {
  const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return V(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16)));
}

// s[j] = q . keys[j] for j < n, summed as torch's MKL product does (see the top); D a multiple of 16
inline void key_dots(const float* q, const BFloat16* keys, int64_t n, int64_t D, float* s) {
  for (int64_t j0 = 0; j0 < n; j0 += 4) {
    const BFloat16* rows[4];
    for (int x = 0; x < 4; ++x) rows[x] = keys + std::min(j0 + x, n - 1) * D;  // past the end: repeat the last
    __m512 lanes = _mm512_setzero_ps();  // 128-bit lane x: the 4 lane sums of key j0 + x
    for (int64_t c = 0; c < D; c += 16) {
      const __m512 qc = _mm512_loadu_ps(q + c);
      __m512 p[4];
      for (int x = 0; x < 4; ++x) p[x] = _mm512_mul_ps(widen(rows[x] + c), qc);  // exact
      // 4x4 transpose of 128-bit lanes: t[r] holds elements c + 4r .. c + 4r + 3 of each of the 4 keys
      const __m512 a = _mm512_shuffle_f32x4(p[0], p[1], 0x44), b = _mm512_shuffle_f32x4(p[0], p[1], 0xEE);
      const __m512 d = _mm512_shuffle_f32x4(p[2], p[3], 0x44), e = _mm512_shuffle_f32x4(p[2], p[3], 0xEE);
      lanes = _mm512_add_ps(lanes, _mm512_shuffle_f32x4(a, d, 0x88));
      lanes = _mm512_add_ps(lanes, _mm512_shuffle_f32x4(a, d, 0xDD));
      lanes = _mm512_add_ps(lanes, _mm512_shuffle_f32x4(b, e, 0x88));
      lanes = _mm512_add_ps(lanes, _mm512_shuffle_f32x4(b, e, 0xDD));
    }
    const __m512 halves = _mm512_add_ps(lanes, _mm512_permute_ps(lanes, 0x4E));  // (l0 + l2), (l1 + l3)
    const __m512 dots = _mm512_add_ps(halves, _mm512_permute_ps(halves, 0xB1));  // their sum, in element 0
    alignas(64) float out[16];
    _mm512_store_ps(out, dots);
    for (int x = 0; x < 4 && j0 + x < n; ++x) s[j0 + x] = out[4 * x];
  }
}
#else
// 8 bfloat16 values as float32
inline V widen(const BFloat16* p) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return V(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16)));
}

// s[j] = q . keys[j] for j < n, summed as torch's MKL product does (see the top), two keys per register; D a
// multiple of 8
inline void key_dots(const float* q, const BFloat16* keys, int64_t n, int64_t D, float* s) {
  for (int64_t j0 = 0; j0 < n; j0 += 2) {
    const BFloat16* first = keys + j0 * D;
    const BFloat16* second = keys + std::min(j0 + 1, n - 1) * D;  // past the end: repeat the last
    __m256 lanes = _mm256_setzero_ps();  // 128-bit lane x: the 4 lane sums of key j0 + x
    for (int64_t c = 0; c < D; c += 8) {
      const __m256 qc = _mm256_loadu_ps(q + c);
      const __m256 p0 = _mm256_mul_ps(widen(first + c), qc), p1 = _mm256_mul_ps(widen(second + c), qc);  // exact
      lanes = _mm256_add_ps(lanes, _mm256_permute2f128_ps(p0, p1, 0x20));  // elements c .. c + 3 of both keys
      lanes = _mm256_add_ps(lanes, _mm256_permute2f128_ps(p0, p1, 0x31));  // then c + 4 .. c + 7
    }
    const __m256 halves = _mm256_add_ps(lanes, _mm256_permute_ps(lanes, 0x4E));  // (l0 + l2), (l1 + l3)
    const __m256 dots = _mm256_add_ps(halves, _mm256_permute_ps(halves, 0xB1));  // their sum, in element 0
    alignas(32) float out[8];
    _mm256_store_ps(out, dots);
    s[j0] = out[0];
    if (j0 + 1 < n) s[j0 + 1] = out[4];
  }
}
#endif

// w[j] = bfloat16(e^(s[j] - top)) for j < n; returns the sum of the e's, both as torch's softmax step computes
// them: its compiled loop takes two vectors of keys per turn into two accumulators (even and odd halves), a last
// vector into a third, adds them as (even + last) + odd and reduces the lanes in ATen's butterfly order; the
// keys left over get float(exp(double)) added one by one
inline float exp_and_sum(const float* s, int64_t n, float top, BFloat16* w) {
  const V shift(top);
  const auto exp_lanes = [&](int64_t j) {
    const V e = (V::loadu(s + j) - shift).fexp_u20();
    alignas(64) float lanes[kLanes];
    e.store(lanes);
    for (int i = 0; i < kLanes; ++i) w[j + i] = BFloat16(lanes[i]);
    return e;
  };
  V even(0.f), odd(0.f), last(0.f);
  const int64_t pairs = n - n % (2 * kLanes), whole = n - n % kLanes;
  for (int64_t j = 0; j < pairs; j += 2 * kLanes) {
    even = even + exp_lanes(j);
    odd = odd + exp_lanes(j + kLanes);
  }
  if (whole > pairs) last = exp_lanes(pairs);
  V total = (even + last) + odd;
  float sum = at::vec::vec_reduce_all<float>([](V& x, V& y) { return x + y; }, total);
  for (int64_t j = whole; j < n; ++j) {
    const float e = static_cast<float>(std::exp(static_cast<double>(s[j] - top)));
    sum += e;
    w[j] = BFloat16(e);
  }
  return sum;
}

// acc[d] += the weighted values of n keys in torch's order (see the top); D a multiple of kLanes. Four keys at a
// time across the whole head (their rows read once, in order; each element's additions stay in torch's order)
inline void add_weighted_values(const BFloat16* w, const BFloat16* vals, int64_t n, int64_t D, float* acc) {
  const int64_t whole = n - n % 4;
  for (int64_t j = 0; j < whole; j += 4) {
    V weight[4];
    for (int x = 0; x < 4; ++x) weight[x] = V(static_cast<float>(w[j + x]));
    for (int64_t c = 0; c < D; c += kLanes) {
      V p[4];
      for (int x = 0; x < 4; ++x) p[x] = weight[x] * widen(vals + (j + x) * D + c);  // exact
      (V::loadu(acc + c) + ((p[0] + p[2]) + (p[1] + p[3]))).store(acc + c);
    }
  }
  for (int64_t j = n - 1; j >= whole; --j) {
    const V weight(static_cast<float>(w[j]));
    for (int64_t c = 0; c < D; c += kLanes) (V::loadu(acc + c) + weight * widen(vals + j * D + c)).store(acc + c);
  }
}

// one (row, head): o [D] = attention of q [D] over keys/values [S, D], mask [S] (or null)
inline void attend_one(const float* q, const BFloat16* keys, const BFloat16* vals, const float* mask, int64_t S,
                       int64_t D, float scale, float* o) {
  static thread_local std::vector<float> scores, acc;
  static thread_local std::vector<BFloat16> weights;
  scores.resize(kTorchKeyBlock), weights.resize(kTorchKeyBlock), acc.assign(D, 0.f);
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  float run_max = kNone, run_sum = 0.f;
  for (int64_t n0 = 0; n0 < S; n0 += kTorchKeyBlock) {
    const int64_t n = std::min(kTorchKeyBlock, S - n0);
    float* s = scores.data();
    key_dots(q, keys + n0 * D, n, D, s);
    float top = kNone;
    for (int64_t j = 0; j < n; ++j) {
      s[j] = s[j] * scale;
      if (mask != nullptr) s[j] = s[j] + mask[n0 + j];
      top = std::max(top, s[j]);
    }
    top = run_max > top ? run_max : top;
    if (top == kNone) {
      std::fill(weights.begin(), weights.begin() + n, BFloat16(0.f));
    } else {
      const float block_sum = exp_and_sum(s, n, top, weights.data());
      const float factor = std::exp(run_max - top);
      run_sum = std::fma(factor, run_sum, block_sum);
      run_max = top;
      if (n0 > 0)
        for (int64_t d = 0; d < D; ++d) acc[d] = acc[d] * factor;
    }
    add_weighted_values(weights.data(), vals + n0 * D, n, D, acc.data());
  }
  const float inverse = 1.f / (run_sum == 0.f ? 1.f : run_sum);
  for (int64_t d = 0; d < D; ++d) o[d] = static_cast<float>(BFloat16(acc[d] * inverse));
}
#else
constexpr bool kTorchAttentionOrder = false;
constexpr int64_t kLanes = 1;
inline void attend_one(const float*, const BFloat16*, const BFloat16*, const float*, int64_t, int64_t, float, float*) {}
#endif

// out[b, h, :] = attention of the new query q[b, h, :] over positions 0..pos of the caches [B, Hkv, cap, D]
// (mask [B, mask_stride] as float32, or null), the heads shared out on the decode pool's threads
inline void attend_like_torch(const float* q, const BFloat16* kc, const BFloat16* vc, const float* mask,
                              int64_t mask_stride, int64_t B, int64_t H, int64_t Hkv, int64_t D, int64_t cap,
                              int64_t pos, float scale, float* out) {
  const int64_t rep = H / Hkv;
  const std::function<void(int64_t)> one = [&](int64_t bh) {
    const int64_t b = bh / H, g = (bh % H) / rep;
    attend_one(q + bh * D, kc + (b * Hkv + g) * cap * D, vc + (b * Hkv + g) * cap * D,
               mask != nullptr ? mask + b * mask_stride : nullptr, pos + 1, D, scale, out + bh * D);
  };
  const int threads = at::get_num_threads();
  if (threads == 1 || B * H == 1) {
    for (int64_t bh = 0; bh < B * H; ++bh) one(bh);
  } else {
    formers_pool::pool(threads).run(B * H, one);
  }
}

// While alive, ATen operators called on this thread run on it alone (no OpenMP region, MKL sequential). torch's
// attention opens a region for every call, and its spinning worker then takes a core from the decode pool (at
// 30 layers a bfloat16 step spent a third of its CPU time spinning). Per-head attention is computed the same on
// any number of threads, and MKL runs sequential inside torch's region anyway, so the numbers do not change.
struct OneThread {
  const int omp = omp_get_max_threads();
  const int mkl = MKL_Set_Num_Threads_Local ? MKL_Set_Num_Threads_Local(1) : 0;
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() {
    omp_set_num_threads(omp);
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(mkl);
  }
};

// out [B, H, D] = torch's scaled_dot_product_attention of q [B, H, D] (bfloat16 values as float32) over positions
// 0..pos of the caches [B, Hkv, cap, D], with the module path's arguments
inline void torch_attention(const float* q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                            const at::Tensor& mask, int64_t B, int64_t H, int64_t pos, double scale, float* out) {
  // Called on the decoding thread, never from a pool thread: there MKL opened an OpenMP team, after which
  // libgomp, counting more threads than cores, stopped spinning at barriers (prefill of a bfloat16 model fell
  // by 25%). One row runs on this thread alone (OneThread); more rows take torch's OpenMP threads (8 rows: 134 ->
  // 170 tok/s), whose spinning afterwards costs less than attending 8 rows on one core.
  std::optional<OneThread> serial;
  if (B == 1) serial.emplace();
  const int64_t D = k_cache.size(3);
  const at::Tensor qt = at::from_blob(const_cast<float*>(q), {B, 1, H, D}, at::TensorOptions().dtype(at::kFloat))
                            .to(at::kBFloat16).transpose(1, 2);
  const c10::optional<at::Tensor> m = mask.defined() ? c10::optional<at::Tensor>(mask.narrow(-1, 0, pos + 1)) : c10::nullopt;
  const at::Tensor o = at::scaled_dot_product_attention(qt, k_cache.narrow(2, 0, pos + 1), v_cache.narrow(2, 0, pos + 1),
                                                        m, 0.0, false, scale, H != k_cache.size(1))
                           .transpose(1, 2).to(at::kFloat).contiguous();
  std::copy(o.data_ptr<float>(), o.data_ptr<float>() + B * H * D, out);
}

// an additive mask [B, 1, 1, S] (or none) as float32 rows for the attention loops: data null when there is none
struct MaskRows {
  at::Tensor values;
  const float* data = nullptr;
  int64_t stride = 0;
};

inline MaskRows mask_rows(const at::Tensor& mask, int64_t B) {
  if (!mask.defined()) return {};
  MaskRows rows{mask.to(at::kFloat).reshape({B, -1}).contiguous()};
  rows.data = rows.values.data_ptr<float>();
  rows.stride = rows.values.size(1);
  return rows;
}

// Whether attend_like_torch equals torch's attention on this machine for this shape: both run on probe data
// (its own xorshift stream) at lengths around every boundary of the order above (4, 16, 32 and 512 keys), with
// left-padding masks where the model passes a mask. Once per (rows, heads, kv heads, head size, mask dtype, threads).
inline bool reproduces_torch(int64_t B, int64_t H, int64_t Hkv, int64_t D, const at::Tensor& mask) {
  // (a boolean mask means "attend" where true; ours takes additive masks only)
  if (!kTorchAttentionOrder || D % kLanes != 0 || H % Hkv != 0 || (mask.defined() && !at::isFloatingType(mask.scalar_type())))
    return false;
  static std::mutex lock;
  static std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int, int>, bool> found;
  const int mask_type = mask.defined() ? static_cast<int>(mask.scalar_type()) : -1;
  const auto key = std::make_tuple(B, H, Hkv, D, mask_type, at::get_num_threads());
  std::lock_guard<std::mutex> hold(lock);
  const auto hit = found.find(key);
  if (hit != found.end()) return hit->second;
  constexpr int64_t cap = 1100;
  const at::Tensor keys = probe_values({B, Hkv, cap, D}, 11), values = probe_values({B, Hkv, cap, D}, 12);
  const at::Tensor q = probe_values({B, H, D}, 13).to(at::kFloat);
  at::Tensor probe_mask;
  if (mask.defined()) {  // row b has its first 3b positions padded, with the dtype's lowest value as the model's
    probe_mask = at::zeros({B, 1, 1, cap}, mask.options());
    const at::Scalar lowest = mask.scalar_type() == at::kBFloat16 ? at::Scalar(std::numeric_limits<BFloat16>::lowest())
                              : mask.scalar_type() == at::kHalf   ? at::Scalar(std::numeric_limits<at::Half>::lowest())
                                                                  : at::Scalar(std::numeric_limits<float>::lowest());
    for (int64_t b = 1; b < B; ++b) probe_mask[b].narrow(-1, 0, 3 * b).fill_(lowest);
  }
  const MaskRows rows = mask_rows(probe_mask, B);
  std::vector<float> ours(B * H * D), theirs(B * H * D);
  bool same = true;
  for (int64_t S : {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 100, 129, 255, 256, 257,
                    511, 512, 513, 543, 1024, 1025, 1100}) {
    torch_attention(q.data_ptr<float>(), keys, values, probe_mask, B, H, S - 1, 1.0 / std::sqrt(D), theirs.data());
    attend_like_torch(q.data_ptr<float>(), keys.data_ptr<BFloat16>(), values.data_ptr<BFloat16>(), rows.data,
                      rows.stride, B, H, Hkv, D, cap, S - 1, static_cast<float>(1.0 / std::sqrt(D)), ours.data());
    if (std::memcmp(ours.data(), theirs.data(), ours.size() * sizeof(float)) != 0) {
      same = false;
      break;
    }
  }
  found[key] = same;
  return same;
}

// out [B, H, D]: the bfloat16 module path's attention for the new position `pos` (its bits), ours where it
// reproduces torch on this machine, else torch's own call
inline void attend(const float* q, const at::Tensor& k_cache, const at::Tensor& v_cache, const at::Tensor& mask,
                   int64_t B, int64_t H, int64_t pos, double scale, float* out) {
  const int64_t Hkv = k_cache.size(1), D = k_cache.size(3);
  if (!reproduces_torch(B, H, Hkv, D, mask)) return torch_attention(q, k_cache, v_cache, mask, B, H, pos, scale, out);
  const MaskRows rows = mask_rows(mask, B);
  attend_like_torch(q, k_cache.data_ptr<BFloat16>(), v_cache.data_ptr<BFloat16>(), rows.data, rows.stride, B, H, Hkv,
                    D, k_cache.size(2), pos, static_cast<float>(scale), out);
}

}  // namespace formers_bf16
