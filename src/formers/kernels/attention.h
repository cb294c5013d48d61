// Attention of one new query position per row against the cached keys and values (decoding).
//
// Per (row, head): scores = scale * q . K + mask, softmax, then the weighted sum of V. With AVX-512 the
// scores of 16 keys come out of one pass (16 accumulators, then one 16-way transposing sum instead of 16
// horizontal sums), and the softmax runs 16 lanes at a time with a vector exp accurate to about one ulp.
// float32 results differ from torch's only by summation order and that last ulp.
#pragma once
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

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

#if defined(__AVX512F__)
// lane i of the result = the sum of the lanes of a[i]
inline __m512 transposed_sums(const __m512* a) {
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

// e^x lane by lane: 2^n * e^r with n = round(x / ln 2), |r| <= ln 2 / 2, e^r by its degree-7 Taylor polynomial
// (truncation error below 1e-8 relative); NaN stays NaN, -inf gives 0, overflow +inf
inline __m512 vexp(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.f), _mm512_max_ps(_mm512_set1_ps(-110.f), x));  // NaN (second operand) passes
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln 2 in two parts: exact n * hi
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.f / 5040);
  for (float c : {1.f / 720, 1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, n);
}
#endif

// p[s] = scale * q . K[s] + mask[s] for s < S (mask may be null)
template <typename T>
void key_scores(const float* q, const T* keys, int64_t S, int64_t D, float scale, const float* mask, float* p) {
  int64_t s = 0;
#if defined(__AVX512F__)
  using namespace formers_gemv;
  if (D % kLanes == 0) {
    for (; s + 16 <= S; s += 16) {
      __m512 acc[16];
      for (auto& a : acc) a = _mm512_setzero_ps();
      for (int64_t d = 0; d < D; d += kLanes) {
        const __m512 qd = vload(q + d);
        for (int i = 0; i < 16; ++i) acc[i] = vfma(qd, vload(keys + (s + i) * D + d), acc[i]);
      }
      __m512 dots = _mm512_mul_ps(transposed_sums(acc), _mm512_set1_ps(scale));
      if (mask != nullptr) dots = _mm512_add_ps(dots, _mm512_loadu_ps(mask + s));
      _mm512_storeu_ps(p + s, dots);
    }
  }
#endif
  for (; s < S; ++s) p[s] = key_dot(q, keys + s * D, D) * scale + (mask != nullptr ? mask[s] : 0.f);
}

// p[0 .. S) = softmax(p) in place
inline void softmax(float* p, int64_t S) {
#if defined(__AVX512F__)
  const int64_t whole = S - S % 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (S % 16)) - 1);
  __m512 top = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t s = 0; s < whole; s += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(p + s));
  top = _mm512_mask_max_ps(top, tail, top, _mm512_maskz_loadu_ps(tail, p + whole));
  const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(top));
  __m512 total = _mm512_setzero_ps();
  for (int64_t s = 0; s < whole; s += 16) {
    const __m512 e = vexp(_mm512_sub_ps(_mm512_loadu_ps(p + s), shift));
    total = _mm512_add_ps(total, e);
    _mm512_storeu_ps(p + s, e);
  }
  const __m512 e = _mm512_maskz_mov_ps(tail, vexp(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p + whole), shift)));
  total = _mm512_add_ps(total, e);
  _mm512_mask_storeu_ps(p + whole, tail, e);
  const __m512 sum = _mm512_set1_ps(_mm512_reduce_add_ps(total));
  for (int64_t s = 0; s < whole; s += 16) _mm512_storeu_ps(p + s, _mm512_div_ps(_mm512_loadu_ps(p + s), sum));
  _mm512_mask_storeu_ps(p + whole, tail, _mm512_div_ps(_mm512_maskz_loadu_ps(tail, p + whole), sum));
#else
  const float top = *std::max_element(p, p + S);
  float total = 0.f;
  for (int64_t s = 0; s < S; ++s) total += (p[s] = std::exp(p[s] - top));
  for (int64_t s = 0; s < S; ++s) p[s] /= total;
#endif
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

// out[b, h, :] = softmax(scale * q . K[b, h / rep, 0..pos] + mask[b, 0..pos]) @ V[b, h / rep, 0..pos]
template <typename T>
void attend(const float* q, const T* kc, const T* vc, const float* mask, int64_t mask_stride, int64_t B,
            int64_t H, int64_t Hkv, int64_t D, int64_t cap, int64_t pos, float scale, float* out) {
  using namespace formers_gemv;
  const int64_t rep = H / Hkv, S = pos + 1;
  const std::function<void(int64_t)> one_head = [&](int64_t bh) {
    static thread_local std::vector<float> weights;  // this thread's own
    weights.resize(S);
    float* p = weights.data();
    const int64_t b = bh / H, h = bh % H, g = h / rep;
    const T* keys = kc + (b * Hkv + g) * cap * D;
    const T* vals = vc + (b * Hkv + g) * cap * D;
    key_scores(q + (b * H + h) * D, keys, S, D, scale, mask != nullptr ? mask + b * mask_stride : nullptr, p);
    softmax(p, S);
    float* o = out + (b * H + h) * D;
    const int64_t dv = D - D % kLanes;
    int64_t d0 = 0;
    for (; d0 + 4 * kLanes <= dv; d0 += 4 * kLanes) weighted_values<4>(p, vals, S, D, d0, o);
    for (; d0 < dv; d0 += kLanes) weighted_values<1>(p, vals, S, D, d0, o);
    for (; d0 < D; ++d0) {
      float acc = 0.f;
      for (int64_t s = 0; s < S; ++s) acc += p[s] * static_cast<float>(vals[s * D + d0]);
      o[d0] = acc;
    }
  };
  const int threads = at::get_num_threads();
  if (threads == 1 || B * H == 1) {
    for (int64_t bh = 0; bh < B * H; ++bh) one_head(bh);
  } else {
    formers_pool::pool(threads).run(B * H, one_head);
  }
}

}  // namespace formers_decode
