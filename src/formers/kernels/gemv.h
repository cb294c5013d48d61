// Small-batch matrix-vector products for decoding on CPU: y[M, N] = x[M, K] @ W[N, K]^T (+ bias), M <= 8.
//
// Decoding one token per row streams every weight once per step, so these products are bound by memory
// bandwidth. Each thread walks its own slice of output rows, R rows at a time, keeping M x R accumulators
// in registers and the M input rows in L1; every weight byte is read exactly once. Weights are float32 or
// bfloat16 (widened to float32 in registers); inputs are float32 and accumulation is always float32.
// `run` computes several weights that share one input (Q/K/V, gate/up) in one parallel region.
//
// The vector width comes from the compiler flags (formers/kernels/build.py picks them from the CPU):
// AVX-512F (16 lanes), AVX2+FMA (8 lanes), else plain C++ loops. bfloat16 weights times bfloat16 inputs sum in
// torch's order on that CPU (`run_bf16`, at the end): with AVX512_BF16 its dot-product instruction, on AVX2 the
// per-output dot products of torch's own loop.
#pragma once
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <immintrin.h>

#include "pool.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <type_traits>
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

// f(std::integral_constant<int, M>{}) for a row count M in 1..8 known only at run time
template <typename F>
inline void with_rows(int64_t M, const F& f) {
  switch (M) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

template <typename W, typename Y>
void rows_any_m(int64_t M, const float* x, const W* w, int64_t K, const float* bias, const float* scale, Y* y, int64_t ldy,
                int64_t begin, int64_t end) {
  with_rows(M, [&](auto m) { rows_range<decltype(m)::value>(x, w, K, bias, scale, y, ldy, begin, end); });
}

constexpr int64_t kRowChunk = 16;  // rows per scheduling unit (a multiple of every R above)
constexpr int64_t kMinClaimBytes = 64 << 10;  // weight bytes a thread claims at once, at least (run_chunks)

struct Job {
  const void* w;
  const float* bias;  // float32 copy of the bias, or nullptr
  void* y;
  int64_t N;
  int64_t first_chunk;  // index of this weight's first chunk in the flattened chunk list
  const float* scale = nullptr;  // float32 scale per output row (int8 weights), or nullptr
  int64_t chunk = 0;  // bfloat16 (run_bf16): the K chunk of torch's summation order
};

constexpr int64_t kPoolRows = 8;  // input rows up to which a fused decode step's products use formers' pool

// Set while this thread runs a fused decode step (kernels.cpp: decode_layer, decode_stack, moe_layer), whose
// products have no torch operator between them; and when this thread's last one ended (steady clock, ns)
inline thread_local bool t_fused_step = false;
inline thread_local int64_t t_fused_step_end_ns = std::numeric_limits<int64_t>::min() / 2;

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class FusedStep {  // marks one fused decode step on this thread
 public:
  FusedStep() : outer_(t_fused_step) { t_fused_step = true; }
  ~FusedStep() {
    t_fused_step = outer_;
    t_fused_step_end_ns = now_ns();
  }

 private:
  bool outer_;
};

// A product that follows a fused step this closely takes the pool too: the LM head after decode_stack (~0.1 ms of
// Python between them). Layers run module by module have no fused step, so their products always go to OpenMP.
constexpr int64_t kFusedStepStillWarmNs = 1000 * 1000;

inline bool in_or_after_fused_step() {
  return t_fused_step || now_ns() - t_fused_step_end_ns < kFusedStepStillWarmNs;
}

// rows(job, begin, end) over every job's output rows, split into chunks of kRowChunk rows; `run` below and the
// block kernels (quant.h) share it. Decoding products (up to kPoolRows input rows) are cut into units that threads
// claim one at a time from a contiguous part each (formers_pool::Parts), so a thread another process holds claims
// little: inside a fused decode step formers' pool's threads claim them; products called one by one between torch
// operators (layers run module by module) have torch's OpenMP threads claim them. Prefill's chunks go to OpenMP
// split evenly. The torch operators around those products run on OpenMP, whose threads spin for a while after each
// region and took a core from the pool's (a quarter of a bfloat16 prefill's samples, a third of a Gemma2 decode's
// were libgomp spinning); an OpenMP region next to fused steps costs as much the other way: its threads then spin
// through the next step.
template <typename Rows>
void run_chunks(const std::vector<Job>& jobs, int64_t total_chunks, int64_t weight_bytes, const Rows& rows,
                int64_t input_rows = 1) {
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
  } else if (input_rows > kPoolRows) {
    at::parallel_for(0, total_chunks, 1, work);
  } else {
    const int64_t chunk_bytes = std::max<int64_t>(1, weight_bytes / total_chunks);
    const int64_t grain = std::max<int64_t>(1, kMinClaimBytes / chunk_bytes);
    const int64_t claims = (total_chunks + grain - 1) / grain;
    const std::function<void(int64_t)> some = [&](int64_t t) {
      work(t * grain, std::min(total_chunks, (t + 1) * grain));
    };
    if (in_or_after_fused_step()) {
      formers_pool::pool(threads).run(claims, some);
    } else {  // the same units, taken by torch's OpenMP threads
      formers_pool::Parts parts(threads);
      parts.reset(1, claims);
      at::parallel_for(0, threads, 1, [&](int64_t self, int64_t) {
        for (int64_t c; (c = parts.next(1, static_cast<int>(self))) >= 0;) some(c);
      });
    }
  }
}

template <typename W, typename Y>
void run(const float* x, int64_t M, int64_t K, const std::vector<Job>& jobs, int64_t total_chunks,
         int64_t weight_bytes) {
  run_chunks(jobs, total_chunks, weight_bytes, [&](const Job& job, int64_t begin, int64_t end) {
    rows_any_m(M, x, static_cast<const W*>(job.w), K, job.bias, job.scale, static_cast<Y*>(job.y), job.N, begin, end);
  }, M);
}


// ---------------------------------------------------------------------------------------------------
// bfloat16 weights times bfloat16 inputs, with AVX512_BF16 (built with -mavx512bf16), in torch's own order.
// torch computes a bfloat16 linear on such CPUs with oneDNN, whose kernel sums each output as one chain of
// vdpbf16ps over consecutive pairs of K (each step adds the pair's two products to the float32 running sum),
// restarting from zero every `chunk` values of K and adding the chunk sums in order, then the bias in
// float32, then one rounding. A different order moves ~0.01-0.1% of outputs one bfloat16 step, and greedy
// decoding then parts from torch's at near-ties; this order reproduces torch bit for bit. `chunk` is found
// by probing torch on this machine (bf16_match.h); it was 512 for one row and 512 or 1024 for more here.
//
// One vector lane per output row: 16 rows are loaded 32 values (16 pairs) at a time, transposed so that
// vector p holds pair p of all 16 rows, and each input row's pair p is broadcast against it. Rows are read
// 16 at a time (16 streams), so the next group of 16 rows is prefetched to L2 while this one is summed:
// without that the LM head read at a third of the bandwidth.
#if defined(__AVX512BF16__)
constexpr int64_t kPair = 32;  // bfloat16 values per vdpbf16ps

// r[i] = 16 pairs of row i  ->  r[p] = pair p of rows 0..15
inline void transpose_pairs(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
  }
}

inline void store_lanes(float* y, __m512 v, __mmask16 live) { _mm512_mask_storeu_ps(y, live, v); }
inline void store_lanes(BFloat16* y, __m512 v, __mmask16 live) {  // oneDNN's conversion: round to nearest even
  _mm256_mask_storeu_epi16(y, live, (__m256i)_mm512_cvtneps_pbh(v));
}

// y[m, n] for n in [begin, end) (begin a multiple of 16) and the M packed input rows xb (row stride Kp, zeros
// past K), summed in torch's order with K chunks of `chunk` values (a multiple of 32)
template <int M, typename Y>
void groups_bf16(const BFloat16* xb, int64_t Kp, const BFloat16* w, int64_t K, int64_t N, int64_t chunk,
                 const float* bias, Y* y, int64_t ldy, int64_t begin, int64_t end) {
  const auto* pairs = reinterpret_cast<const uint32_t*>(xb);
  for (int64_t n0 = begin; n0 < end; n0 += 16) {
    const int rows = static_cast<int>(std::min<int64_t>(16, end - n0));
    const BFloat16* group = w + n0 * K;
    const char* next = reinterpret_cast<const char*>(group + 16 * K);  // the next group's 32 K bytes, in order
    const bool prefetch = n0 + 32 <= N;
    __m512 total[M];
    for (int m = 0; m < M; ++m) total[m] = _mm512_setzero_ps();
    for (int64_t c0 = 0; c0 < K; c0 += chunk) {
      const int64_t c1 = std::min(K, c0 + chunk);
      __m512 acc[M];
      for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
      for (int64_t k = c0; k < c1; k += kPair) {
        const int64_t count = std::min(kPair, c1 - k);
        const __mmask32 live = count == kPair ? ~__mmask32(0) : static_cast<__mmask32>((1u << count) - 1u);
        if (prefetch)
          for (int i = 0; i < 16; ++i) _mm_prefetch(next + (k / kPair * 16 + i) * 64, _MM_HINT_T1);
        __m512i r[16];
        for (int i = 0; i < 16; ++i)
          r[i] = i < rows ? _mm512_maskz_loadu_epi16(live, group + i * K + k) : _mm512_setzero_si512();
        transpose_pairs(r);
        const int64_t used = (count + 1) / 2;
        for (int64_t p = 0; p < used; ++p)
          for (int m = 0; m < M; ++m)
            acc[m] = _mm512_dpbf16_ps(acc[m], (__m512bh)_mm512_set1_epi32(pairs[(m * Kp + k) / 2 + p]), (__m512bh)r[p]);
      }
      for (int m = 0; m < M; ++m) total[m] = _mm512_add_ps(total[m], acc[m]);
    }
    const __mmask16 live = static_cast<__mmask16>((1u << rows) - 1u);
    const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(live, bias + n0) : _mm512_setzero_ps();
    for (int m = 0; m < M; ++m)
      store_lanes(y + m * ldy + n0, bias != nullptr ? _mm512_add_ps(total[m], b) : total[m], live);
  }
}

// x [M, K] float32 -> bfloat16 [M, Kp] (round to nearest even; exact for bfloat16 values), zero padded
inline void pack_bf16(const float* x, int64_t M, int64_t K, int64_t Kp, BFloat16* out) {
  for (int64_t m = 0; m < M; ++m) {
    const float* src = x + m * K;
    BFloat16* dst = out + m * Kp;
    for (int64_t k = 0; k < Kp; k += 16) {
      const __mmask16 live = k + 16 <= K ? static_cast<__mmask16>(0xffff)
                             : k < K    ? static_cast<__mmask16>((1u << (K - k)) - 1u)
                                        : static_cast<__mmask16>(0);
      const __m256bh packed = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(live, src + k));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k), (__m256i)packed);
    }
  }
}
constexpr bool kTorchOrderBf16 = true;
#else
constexpr bool kTorchOrderBf16 = false;
#endif

// ---------------------------------------------------------------------------------------------------
// bfloat16 weights times bfloat16 inputs on AVX2 CPUs without AVX-512 (built for "avx2"), in torch's order there.
// Such a CPU has no oneDNN bfloat16 product, so torch's linear takes one dot product per output (ATen's
// bf16_dot_with_fp32_arith, 8-lane float32 vectors): 64 values per step into eight sums, sum q lane l taking value
// 8q + l of the step by a fused multiply-add; the sums added as a tree (q with q + 4, then q + 2, then q + 1) and
// the lanes as a tree (lane l with l + 4, l + 2, l + 1); then 16 values at a time into one more sum, reduced the
// same way and added; then each remaining value's product added. Bias and output rounding as above.
constexpr int64_t kDotOrder = -1;  // Job::chunk: this order

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
constexpr bool kTorchDotOrderBf16 = true;

inline __m256 widen8(const BFloat16* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

inline float lane_tree(__m256 v) {
  v = _mm256_add_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_add_ps(v, _mm256_shuffle_ps(v, v, 0x4E));
  v = _mm256_add_ps(v, _mm256_shuffle_ps(v, v, 0xB1));
  return _mm256_cvtss_f32(v);
}

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const BFloat16* p) { return widen8(p); }

// total + the products of values [k64, K) (after the 64-value steps) in torch's order: 16 at a time into one
// more sum, reduced, added; then one by one
template <typename W>
inline float dot_tail(const float* x, const W* w, int64_t k64, int64_t K, float total) {
  if (k64 == K) return total + 0.0f;  // torch adds the (zero) sum of no tail: the same value, without the tree
  const int64_t k16 = K - K % 16;
  __m256 tail = _mm256_setzero_ps();
  for (int64_t k = k64; k < k16; k += 16) {
    tail = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(w + k), tail);
    tail = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), load8(w + k + 8), tail);
  }
  total += lane_tree(tail);
  for (int64_t k = k16; k < K; ++k) total += x[k] * static_cast<float>(w[k]);  // (products of bfloat16s are exact)
  return total;
}

// x . w in torch's order for x, K float32 values holding bfloat16 values, and w, K bfloat16 values, read in one
// pass (one sequential stream for the hardware prefetcher, helped by a software prefetch 2 KiB ahead: together
// ~20 GB/s on two Zen 3 cores where a multi-pass read of four rows got ~13)
inline float dot_torch_order(const float* x, const BFloat16* w, int64_t K) {
  const int64_t k64 = K - K % 64;
  __m256 s[8];
  for (auto& v : s) v = _mm256_setzero_ps();
  for (int64_t k = 0; k < k64; k += 64) {
    const char* ahead = reinterpret_cast<const char*>(w + k) + 2048;
    _mm_prefetch(ahead, _MM_HINT_T0);
    _mm_prefetch(ahead + 64, _MM_HINT_T0);
    for (int q = 0; q < 8; ++q) s[q] = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8 * q), widen8(w + k + 8 * q), s[q]);
  }
  for (int half = 4; half > 0; half /= 2)
    for (int q = 0; q < half; ++q) s[q] = _mm256_add_ps(s[q], s[q + half]);
  return dot_tail(x, w, k64, K, lane_tree(s[0]));
}

// out[m * ldo + r] = row m of x (row stride ldx) . row r of w (float32 holding bfloat16 values, row stride ldw)
// for MB input rows and R weight rows, each in torch's order. A pass over K takes one of the eight sums for all
// MB x R outputs at once (MB + R loads per MB x R fused multiply-adds), or sums q and q + 4 together where MB x R
// alone is too few independent chains to hide the multiply-add's latency. Rows too long to share L1 go in
// segments of K, the running sums waiting in memory between them (K 1536 and 2560: 1.4x and 1.6x here); in the
// last one sum q + 4 is added to sum q, which the tree does first.
template <int MB, int R>
inline void dots_torch_order(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t K, float* out,
                             int64_t ldo) {
  constexpr int kTogether = MB * R <= 6 ? 2 : 1;  // sums per pass
  constexpr int64_t kL1Bytes = 28 << 10, kSegment = 512;
  const int64_t k64 = K - K % 64;
  const int64_t parts = (MB + R) * k64 * 4 <= kL1Bytes ? 1 : (k64 + kSegment - 1) / kSegment;
  const int64_t segment = std::max<int64_t>(64, (k64 / 64 + parts - 1) / parts * 64);
  __m256 sums[8][MB][R];
  for (int64_t s0 = 0; s0 == 0 || s0 < k64; s0 += segment) {
    const int64_t s1 = std::min(k64, s0 + segment);
    for (int pass = 0; pass < 8 / kTogether; ++pass) {
      __m256 acc[kTogether][MB][R];  // acc[t]: sum pass + 4t
      for (int t = 0; t < kTogether; ++t)
        for (int m = 0; m < MB; ++m)
          for (int r = 0; r < R; ++r) acc[t][m][r] = s0 == 0 ? _mm256_setzero_ps() : sums[pass + 4 * t][m][r];
      for (int64_t k = s0 + 8 * pass; k < s1; k += 64)
        for (int t = 0; t < kTogether; ++t) {
          __m256 xs[MB];
          for (int m = 0; m < MB; ++m) xs[m] = _mm256_loadu_ps(x + m * ldx + k + 32 * t);
          for (int r = 0; r < R; ++r) {
            const __m256 wr = _mm256_loadu_ps(w + r * ldw + k + 32 * t);
            for (int m = 0; m < MB; ++m) acc[t][m][r] = _mm256_fmadd_ps(xs[m], wr, acc[t][m][r]);
          }
        }
      for (int t = 0; t < kTogether; ++t)
        for (int m = 0; m < MB; ++m)
          for (int r = 0; r < R; ++r) {
            const int q = pass + 4 * t;
            if (s1 == k64 && q >= 4) sums[q - 4][m][r] = _mm256_add_ps(sums[q - 4][m][r], acc[t][m][r]);
            else sums[q][m][r] = acc[t][m][r];
          }
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < R; ++r) {
      const __m256 tree = _mm256_add_ps(_mm256_add_ps(sums[0][m][r], sums[2][m][r]),
                                        _mm256_add_ps(sums[1][m][r], sums[3][m][r]));
      out[m * ldo + r] = dot_tail(x + m * ldx, w + r * ldw, k64, K, lane_tree(tree));
    }
}

inline void store_value(float* y, float v) { *y = v; }
inline void store_value(BFloat16* y, float v) { *y = BFloat16(v); }  // round to nearest even, as torch stores it

// y[m, n] for n in [begin, end) and the M input rows x (float32 holding bfloat16 values). Decoding (up to two rows)
// streams each weight row once per input row (the second from L1); beyond that (prefill) four weight rows at a
// time are widened into L1 once and the input rows take them three at a time.
template <typename Y>
void rows_dot_bf16(const float* x, int64_t M, const BFloat16* w, int64_t K, const float* bias, Y* y, int64_t ldy,
                   int64_t begin, int64_t end) {
  const auto out = [&](int64_t m, int64_t n, float dot) {
    store_value(y + m * ldy + n, bias != nullptr ? bias[n] + dot : dot);
  };
  if (M <= 2) {
    for (int64_t n = begin; n < end; ++n)
      for (int64_t m = 0; m < M; ++m) out(m, n, dot_torch_order(x + m * K, w + n * K, K));
    return;
  }
  constexpr int kRows = 4, kInputs = 3;
  thread_local std::vector<float> wide;
  wide.resize(static_cast<size_t>(kRows * K));
  float dots[kInputs * kRows];
  for (int64_t n0 = begin; n0 < end; n0 += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, end - n0));
    const int64_t count = rows * K, count8 = count - count % 8;
    for (int64_t i = 0; i < count8; i += 8) _mm256_storeu_ps(wide.data() + i, widen8(w + n0 * K + i));
    for (int64_t i = count8; i < count; ++i) wide[i] = static_cast<float>(w[n0 * K + i]);
    // outputs [m, m + MB) x [n0, n0 + R) through dots_torch_order<MB, R>
    const auto take = [&](auto inputs, auto outputs, int64_t m, int r0) {
      constexpr int MB = decltype(inputs)::value, R = decltype(outputs)::value;
      dots_torch_order<MB, R>(x + m * K, K, wide.data() + r0 * K, K, K, dots, R);
      for (int i = 0; i < MB; ++i)
        for (int r = 0; r < R; ++r) out(m + i, n0 + r0 + r, dots[i * R + r]);
    };
    using One = std::integral_constant<int, 1>;
    using Rows = std::integral_constant<int, kRows>;
    int64_t m = 0;
    if (rows == kRows) {
      for (; m + kInputs <= M; m += kInputs) take(std::integral_constant<int, kInputs>{}, Rows{}, m, 0);
      if (M - m == 2) take(std::integral_constant<int, 2>{}, Rows{}, m, 0), m += 2;
      if (M - m == 1) take(One{}, Rows{}, m, 0), m += 1;
    }
    for (; m < M; ++m)
      for (int r = 0; r < rows; ++r) take(One{}, One{}, m, r);
  }
}
#else
constexpr bool kTorchDotOrderBf16 = false;
#endif
constexpr bool kBf16Products = kTorchOrderBf16 || kTorchDotOrderBf16;  // run_bf16 has a kernel in this build

// y_i = x @ W_i^T (+ b_i) for bfloat16 weights and inputs x that hold bfloat16 values (as float32), each job
// in torch's order with its `chunk` (kDotOrder: the AVX2 order); needs kBf16Products (the callers check)
template <typename Y>
void run_bf16(const float* x, int64_t M, int64_t K, const std::vector<Job>& jobs, int64_t total_chunks,
              int64_t weight_bytes) {
#if defined(__AVX512BF16__)
  const int64_t Kp = (K + kPair - 1) / kPair * kPair;
  thread_local std::vector<BFloat16> packed;
  packed.resize(static_cast<size_t>(M * Kp));
  pack_bf16(x, M, K, Kp, packed.data());
  const BFloat16* xb = packed.data();
  run_chunks(jobs, total_chunks, weight_bytes, [&](const Job& job, int64_t begin, int64_t end) {
    const auto* w = static_cast<const BFloat16*>(job.w);
    Y* y = static_cast<Y*>(job.y);
    with_rows(M, [&](auto m) {
      groups_bf16<decltype(m)::value>(xb, Kp, w, K, job.N, job.chunk, job.bias, y, job.N, begin, end);
    });
  }, M);
#elif defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
  run_chunks(jobs, total_chunks, weight_bytes, [&](const Job& job, int64_t begin, int64_t end) {
    rows_dot_bf16(x, M, static_cast<const BFloat16*>(job.w), K, job.bias, static_cast<Y*>(job.y), job.N, begin, end);
  }, M);
#else
  (void)x, (void)M, (void)K, (void)jobs, (void)total_chunks, (void)weight_bytes;
  TORCH_CHECK(false, "run_bf16 needs an AVX512_BF16 or AVX2 build");
#endif
}

}  // namespace formers_gemv
