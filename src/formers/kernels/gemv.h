// Small-batch matrix-vector products for decoding on CPU: y[M, N] = x[M, K] @ W[N, K]^T (+ bias), M <= 8.
//
// Decoding one token per row streams every weight once per step, so these products are bound by memory
// bandwidth. Each thread walks its own slice of output rows, R rows at a time, keeping M x R accumulators
// in registers and the M input rows in L1; every weight byte is read exactly once. Weights are float32 or
// bfloat16 (widened to float32 in registers); inputs are float32 and accumulation is always float32.
// `run` computes several weights that share one input (Q/K/V, gate/up) in one parallel region.
//
// The vector width comes from the compiler flags (formers/kernels/build.py picks them from the CPU):
// AVX-512F (16 lanes), AVX2+FMA (8 lanes), else plain C++ loops.
#pragma once
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>

#include "pool.h"

#include <algorithm>
#include <functional>
#include <vector>

namespace formers_gemv {

using BFloat16 = c10::BFloat16;

// ---------------------------------------------------------------------------------------------------
// vector helpers: load float32 / bfloat16 as float32 lanes, fused multiply-add, horizontal sum
#if defined(__AVX512F__)
constexpr int kLanes = 16;
using Vec = __m512;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vset1(float v) { return _mm512_set1_ps(v); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline Vec vload(const BFloat16* p) {
  __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}
inline Vec vload(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(Vec v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kLanes = 8;
using Vec = __m256;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vset1(float v) { return _mm256_set1_ps(v); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline Vec vload(const BFloat16* p) {
  __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}
inline Vec vload(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#else
constexpr int kLanes = 1;
using Vec = float;
inline Vec vzero() { return 0.f; }
inline Vec vset1(float v) { return v; }
inline Vec vload(const float* p) { return *p; }
inline Vec vload(const BFloat16* p) { return static_cast<float>(*p); }
inline Vec vload(const int8_t* p) { return static_cast<float>(*p); }
inline Vec vfma(Vec a, Vec b, Vec c) { return a * b + c; }
inline float vsum(Vec v) { return v; }
#endif

inline float to_float(float v) { return v; }
inline float to_float(BFloat16 v) { return static_cast<float>(v); }
inline float to_float(int8_t v) { return static_cast<float>(v); }

// Rows [n0, n0 + R) of one weight against all M input rows (float32, row stride K).
// y[m * ldy + n] = (sum_k x[m, k] * w[n, k]) * scale[n] + bias[n]  (int8 weights carry a scale per row)
template <int M, int R, typename W, typename Y>
inline void block(const float* x, const W* w, int64_t K, const float* bias, const float* scale, Y* y, int64_t ldy, int64_t n0) {
  Vec acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = vzero();
  const W* rows = w + n0 * K;
  const int64_t kv = K - K % kLanes;
  for (int64_t k = 0; k < kv; k += kLanes) {
    Vec wr[R];
    for (int r = 0; r < R; ++r) wr[r] = vload(rows + r * K + k);
    for (int m = 0; m < M; ++m) {
      Vec xm = vload(x + m * K + k);
      for (int r = 0; r < R; ++r) acc[m][r] = vfma(wr[r], xm, acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m) {
    for (int r = 0; r < R; ++r) {
      float s = vsum(acc[m][r]);
      for (int64_t k = kv; k < K; ++k) s += x[m * K + k] * to_float(rows[r * K + k]);
      if (scale != nullptr) s *= scale[n0 + r];
      if (bias != nullptr) s += bias[n0 + r];
      y[m * ldy + n0 + r] = static_cast<Y>(s);
    }
  }
}

// One input row: each weight row read front to back (one sequential stream, which the hardware prefetcher
// follows; interleaving rows shortens the streams and lost ~30% of bandwidth), four accumulators.
template <typename W, typename Y>
void single_row(const float* x, const W* w, int64_t K, const float* bias, const float* scale, Y* y,
                int64_t begin, int64_t end) {
  const int64_t k4 = K - K % (4 * kLanes), kv = K - K % kLanes;
  for (int64_t n = begin; n < end; ++n) {
    const W* row = w + n * K;
    Vec a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    int64_t k = 0;
    for (; k < k4; k += 4 * kLanes) {
      a0 = vfma(vload(row + k), vload(x + k), a0);
      a1 = vfma(vload(row + k + kLanes), vload(x + k + kLanes), a1);
      a2 = vfma(vload(row + k + 2 * kLanes), vload(x + k + 2 * kLanes), a2);
      a3 = vfma(vload(row + k + 3 * kLanes), vload(x + k + 3 * kLanes), a3);
    }
    for (; k < kv; k += kLanes) a0 = vfma(vload(row + k), vload(x + k), a0);
    float s = vsum(a0) + vsum(a1) + vsum(a2) + vsum(a3);
    for (; k < K; ++k) s += x[k] * to_float(row[k]);
    if (scale != nullptr) s *= scale[n];
    if (bias != nullptr) s += bias[n];
    y[n] = static_cast<Y>(s);
  }
}

// Rows [begin, end) of one weight, R rows at a time and single rows for the tail.
template <int M, typename W, typename Y>
void rows_range(const float* x, const W* w, int64_t K, const float* bias, const float* scale, Y* y, int64_t ldy, int64_t begin,
                int64_t end) {
  if constexpr (M == 1) {
    return single_row(x, w, K, bias, scale, y, begin, end);
  }
  constexpr int R = M <= 4 ? 4 : 2;
  int64_t n = begin;
  for (; n + R <= end; n += R) block<M, R>(x, w, K, bias, scale, y, ldy, n);
  for (; n < end; ++n) block<M, 1>(x, w, K, bias, scale, y, ldy, n);
}

template <typename W, typename Y>
void rows_any_m(int64_t M, const float* x, const W* w, int64_t K, const float* bias, const float* scale, Y* y, int64_t ldy,
                int64_t begin, int64_t end) {
  switch (M) {
    case 1: return rows_range<1>(x, w, K, bias, scale, y, ldy, begin, end);
    case 2: return rows_range<2>(x, w, K, bias, scale, y, ldy, begin, end);
    case 3: return rows_range<3>(x, w, K, bias, scale, y, ldy, begin, end);
    case 4: return rows_range<4>(x, w, K, bias, scale, y, ldy, begin, end);
    case 5: return rows_range<5>(x, w, K, bias, scale, y, ldy, begin, end);
    case 6: return rows_range<6>(x, w, K, bias, scale, y, ldy, begin, end);
    case 7: return rows_range<7>(x, w, K, bias, scale, y, ldy, begin, end);
    default: return rows_range<8>(x, w, K, bias, scale, y, ldy, begin, end);
  }
}

constexpr int64_t kRowChunk = 16;  // rows per scheduling unit (a multiple of every R above)

struct Job {
  const void* w;
  const float* bias;  // float32 copy of the bias, or nullptr
  void* y;
  int64_t N;
  int64_t first_chunk;  // index of this weight's first chunk in the flattened chunk list
  const float* scale = nullptr;  // float32 scale per output row (int8 weights), or nullptr
};

// rows(job, begin, end) over every job's output rows, split into chunks of kRowChunk rows that the pool's
// threads claim; `run` below and the block kernels (quant.h) share it.
template <typename Rows>
void run_chunks(const std::vector<Job>& jobs, int64_t total_chunks, int64_t weight_bytes, const Rows& rows) {
  auto work = [&](int64_t c0, int64_t c1) {
    size_t j = 0;
    for (int64_t c = c0; c < c1;) {
      while (j + 1 < jobs.size() && jobs[j + 1].first_chunk <= c) ++j;
      const Job& job = jobs[j];
      const int64_t job_end = j + 1 < jobs.size() ? jobs[j + 1].first_chunk : total_chunks;
      const int64_t stop = std::min(c1, job_end);
      const int64_t begin = (c - job.first_chunk) * kRowChunk;
      const int64_t end = std::min(job.N, (stop - job.first_chunk) * kRowChunk);
      rows(job, begin, end);
      c = stop;
    }
  };
  // below ~64 KiB of weights a second thread costs more than it saves
  const int threads = at::get_num_threads();
  if (weight_bytes < (64 << 10) || threads == 1) {
    work(0, total_chunks);
  } else {
    // ~32 claims per thread: small enough that a preempted thread holds little, few enough to stay cheap
    const int64_t grain = std::max<int64_t>(1, total_chunks / (32 * threads));
    const std::function<void(int64_t)> some = [&](int64_t t) {
      work(t * grain, std::min(total_chunks, (t + 1) * grain));
    };
    formers_pool::pool(threads).run((total_chunks + grain - 1) / grain, some);
  }
}

template <typename W, typename Y>
void run(const float* x, int64_t M, int64_t K, const std::vector<Job>& jobs, int64_t total_chunks,
         int64_t weight_bytes) {
  run_chunks(jobs, total_chunks, weight_bytes, [&](const Job& job, int64_t begin, int64_t end) {
    rows_any_m(M, x, static_cast<const W*>(job.w), K, job.bias, job.scale, static_cast<Y*>(job.y), job.N, begin, end);
  });
}

}  // namespace formers_gemv
