// Attention of one new query position per row against the cached keys and values (decoding).
//
// Per (row, kv head, range of keys): scores = scale * q . K + mask for every query head sharing that kv head,
// exponentiated weights, then their weighted sum of V; the ranges are merged per head at the end (`attend`).
// With vectors (ATen's: 16 lanes with AVX-512, 8 with AVX2) the scores of one key per lane come out of one pass
// (an accumulator per key, then one transposing sum instead of a horizontal sum per key), and the exponentials run
// a vector at a time with an exp accurate to about one ulp. float32 results differ from torch's only by summation
// order and that last ulp.
#pragma once
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <ATen/cpu/vec/vec.h>
#endif

#include "gemv.h"

namespace formers_decode {

// q . k for one key: D / lanes fused multiply-adds into one accumulator, its lanes summed, then the tail
template <typename T>
inline float key_dot(const float* q, const T* key, int64_t D) {
  using namespace formers_gemv;
  Vec acc = vzero();
  int64_t d = 0;
  for (; d + kLanes <= D; d += kLanes) acc = vfma(vload(q + d), vload(key + d), acc);
  float dot = vsum(acc);
  for (; d < D; ++d) dot += q[d] * static_cast<float>(key[d]);
  return dot;
}

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
using V = at::vec::Vectorized<float>;  // 16 lanes with AVX-512, 8 with AVX2 (formers_gemv::kLanes alike)

#if defined(CPU_CAPABILITY_AVX512)
// lane i of the result = the sum of the lanes of a[i]
inline V transposed_sums(const V* a) {
  __m512 pairs[8], quads[4];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: (a[2i], a[2i+1], a[2i], a[2i+1]) partial sums
    pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane: partial sums of keys 4i .. 4i + 3
    const __m512d x = _mm512_castps_pd(pairs[2 * i]), y = _mm512_castps_pd(pairs[2 * i + 1]);
    quads[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // lane k of the result: the four 128-bit lanes of quads[k] added
  const __m512 q01 = _mm512_add_ps(_mm512_shuffle_f32x4(quads[0], quads[1], 0x88), _mm512_shuffle_f32x4(quads[0], quads[1], 0xDD));
  const __m512 q23 = _mm512_add_ps(_mm512_shuffle_f32x4(quads[2], quads[3], 0x88), _mm512_shuffle_f32x4(quads[2], quads[3], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(q01, q23, 0x88), _mm512_shuffle_f32x4(q01, q23, 0xDD));
}

// p * 2^n for whole numbers n, rounded once (below the normal range down to 0, above it +inf)
inline V times_power_of_two(V p, V n) { return _mm512_scalef_ps(p, n); }
#else
inline V transposed_sums(const V* a) {
  const __m256 low = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));  // keys 0-3, per half
  const __m256 high = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));  // keys 4-7
  return _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20), _mm256_permute2f128_ps(low, high, 0x31));
}

// as scalef: 2^n applied as two exact powers of two (n / 2 each way), the first product exact, the second rounded
inline V times_power_of_two(V p, V n) {
  const __m256i whole = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(whole, 1), rest = _mm256_sub_epi32(whole, half);
  const auto power = [](__m256i e) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  };
  return _mm256_mul_ps(_mm256_mul_ps(p, power(half)), power(rest));
}
#endif

// e^x lane by lane: 2^n * e^r with n = round(x / ln 2), |r| <= ln 2 / 2, e^r by its degree-7 Taylor polynomial
// (truncation error below 1e-8 relative); NaN stays NaN, -inf gives 0, overflow +inf
inline V vexp(V x) {
  x = at::vec::clamp(x, V(-110.f), V(89.f));  // NaN passes
  const V n = (x * V(1.44269504088896341f)).round();
  V r = at::vec::fmadd(n, V(-0.693145751953125f), x);  // ln 2 in two parts: exact n * hi
  r = at::vec::fmadd(n, V(-1.428606765330187e-06f), r);
  V p(1.f / 5040);
  for (float c : {1.f / 720, 1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f}) p = at::vec::fmadd(p, r, V(c));
  return times_power_of_two(p, n);
}
#endif

// p[s] = scale * q . K[s] + mask[s] for s < S (mask may be null)
template <typename T>
void key_scores(const float* q, const T* keys, int64_t S, int64_t D, float scale, const float* mask, float* p) {
  int64_t s = 0;
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  using formers_gemv::vload;
  constexpr int keys_per_pass = V::size();  // one score per lane
  if (D % V::size() == 0) {
    for (; s + keys_per_pass <= S; s += keys_per_pass) {
      V acc[keys_per_pass];
      for (auto& a : acc) a = V(0.f);
      for (int64_t d = 0; d < D; d += V::size()) {
        const V qd = V::loadu(q + d);
        for (int i = 0; i < keys_per_pass; ++i) acc[i] = at::vec::fmadd(qd, V(vload(keys + (s + i) * D + d)), acc[i]);
      }
      V dots = transposed_sums(acc) * V(scale);
      if (mask != nullptr) dots = dots + V::loadu(mask + s);
      dots.store(p + s);
    }
  }
#endif
  for (; s < S; ++s) p[s] = key_dot(q, keys + s * D, D) * scale + (mask != nullptr ? mask[s] : 0.f);
}

// p[0 .. S) = exp(p - top) in place, top = max p (returned); their sum goes to *total. Where every p is -inf the
// weights are 0 (a piece of keys all masked away), not NaN.
inline float exp_weights(float* p, int64_t S, float* total) {
  int64_t whole = 0;
  float top = -std::numeric_limits<float>::infinity(), sum = 0.f;
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  whole = S - S % V::size();
  V tops(top);
  for (int64_t s = 0; s < whole; s += V::size()) tops = at::vec::maximum(tops, V::loadu(p + s));
  alignas(64) float lanes[V::size()];
  tops.store(lanes);
  top = *std::max_element(lanes, lanes + V::size());
#endif
  for (int64_t s = whole; s < S; ++s) top = std::max(top, p[s]);
  const float shift = std::isinf(top) && top < 0 ? 0.f : top;
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  V sums(0.f);
  for (int64_t s = 0; s < whole; s += V::size()) {
    const V e = vexp(V::loadu(p + s) - V(shift));
    sums = sums + e;
    e.store(p + s);
  }
  sum = formers_gemv::vsum(sums);
#endif
  for (int64_t s = whole; s < S; ++s) sum += (p[s] = std::exp(p[s] - shift));
  *total = sum;
  return top;
}

// o[d0 .. d0 + NV * lanes) = sum over s of w[s] * V[s, d0 ..], in s order, in NV register accumulators
template <int NV, typename T>
inline void weighted_values(const float* w, const T* vals, int64_t S, int64_t D, int64_t d0, float* o) {
  using namespace formers_gemv;
  Vec acc[NV];
  for (int j = 0; j < NV; ++j) acc[j] = vzero();
  for (int64_t s = 0; s < S; ++s) {
    const Vec ws = vset1(w[s]);
    for (int j = 0; j < NV; ++j) acc[j] = vfma(ws, vload(vals + s * D + d0 + j * kLanes), acc[j]);
  }
  for (int j = 0; j < NV; ++j) {
    alignas(64) float lanes[kLanes];
    std::memcpy(lanes, &acc[j], sizeof(lanes));
    std::copy(lanes, lanes + kLanes, o + d0 + j * kLanes);
  }
}

// Keys per piece of one kv head's keys, at least: a piece's scores, softmax and weighted values cost about as much as
// dispatching it below this
constexpr int64_t kMinPieceKeys = 32;

// out[b, h, :] = softmax(scale * q . K[b, h / rep, 0..pos] + mask[b, 0..pos]) @ V[b, h / rep, 0..pos]
//
// The work is cut by kv head and, where that leaves a thread idle, by ranges of keys: each piece reads its keys and
// values once for all `rep` query heads that share them (they stay in L1/L2 between those heads) and keeps, per
// head, its own maximum, sum of weights and weighted values; the pieces are then merged with the usual rescaling
// (softmax(p) @ V = sum_i e^(m_i - M) o_i / sum_i e^(m_i - M) l_i). float32 results differ from one
// softmax-then-sum pass only by rounding.
template <typename T>
void attend(const float* q, const T* kc, const T* vc, const float* mask, int64_t mask_stride, int64_t B,
            int64_t H, int64_t Hkv, int64_t D, int64_t cap, int64_t pos, float scale, float* out) {
  using namespace formers_gemv;
  const int64_t rep = H / Hkv, S = pos + 1, groups = B * Hkv;
  const int threads = at::get_num_threads();
  const int64_t wanted = threads == 1 ? 1 : (4 * threads + groups - 1) / groups;  // pieces per group
  const int64_t pieces = std::max<int64_t>(1, std::min(wanted, S / kMinPieceKeys));
  const int64_t span = (S + pieces - 1) / pieces;
  // per (b, h, piece): weighted values [D] (unnormalised), their weights' maximum exponent and sum
  std::vector<float> part_o(B * H * pieces * D), part_top(B * H * pieces), part_sum(B * H * pieces);
  const std::function<void(int64_t)> one_piece = [&](int64_t i) {
    static thread_local std::vector<float> weights;  // this thread's own
    const int64_t piece = i % pieces, bg = i / pieces, b = bg / Hkv, g = bg % Hkv;
    const int64_t s0 = piece * span, n = std::min(S, s0 + span) - s0;
    if (n <= 0) {
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        const int64_t slot = (b * H + h) * pieces + piece;
        part_top[slot] = -std::numeric_limits<float>::infinity(), part_sum[slot] = 0.f;
        std::fill(part_o.begin() + slot * D, part_o.begin() + (slot + 1) * D, 0.f);
      }
      return;
    }
    weights.resize(n);
    float* p = weights.data();
    const T* keys = kc + ((b * Hkv + g) * cap + s0) * D;
    const T* vals = vc + ((b * Hkv + g) * cap + s0) * D;
    const float* mask_row = mask != nullptr ? mask + b * mask_stride + s0 : nullptr;
    for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
      const int64_t slot = (b * H + h) * pieces + piece;
      key_scores(q + (b * H + h) * D, keys, n, D, scale, mask_row, p);
      part_top[slot] = exp_weights(p, n, &part_sum[slot]);
      float* o = part_o.data() + slot * D;
      const int64_t dv = D - D % kLanes;
      int64_t d0 = 0;
      for (; d0 + 4 * kLanes <= dv; d0 += 4 * kLanes) weighted_values<4>(p, vals, n, D, d0, o);
      for (; d0 < dv; d0 += kLanes) weighted_values<1>(p, vals, n, D, d0, o);
      for (; d0 < D; ++d0) {
        float acc = 0.f;
        for (int64_t s = 0; s < n; ++s) acc += p[s] * static_cast<float>(vals[s * D + d0]);
        o[d0] = acc;
      }
    }
  };
  if (threads == 1 || groups * pieces == 1) {
    for (int64_t i = 0; i < groups * pieces; ++i) one_piece(i);
  } else {
    formers_pool::pool(threads).run(groups * pieces, one_piece);
  }
  for (int64_t bh = 0; bh < B * H; ++bh) {  // merge each head's pieces
    const float* tops = part_top.data() + bh * pieces;
    const float top = *std::max_element(tops, tops + pieces);
    const float shift = std::isinf(top) && top < 0 ? 0.f : top;
    float total = 0.f;
    float* o = out + bh * D;
    std::fill(o, o + D, 0.f);
    for (int64_t piece = 0; piece < pieces; ++piece) {
      const float w = std::exp(tops[piece] - shift);  // 1 for the piece holding the maximum
      total += w * part_sum[bh * pieces + piece];
      const float* po = part_o.data() + (bh * pieces + piece) * D;
      for (int64_t d = 0; d < D; ++d) o[d] += w * po[d];
    }
    const float inv = 1.f / total;
    for (int64_t d = 0; d < D; ++d) o[d] *= inv;
  }
}

}  // namespace formers_decode
