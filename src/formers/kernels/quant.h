// y[M, N] = x[M, K] @ W^T (+ bias) for weights kept in llama.cpp's GGUF blocks, exactly as the file stores them:
//   Q8_0: 34-byte blocks = fp16 scale d + 32 int8 q;                 w = q * d
//   Q4_0: 18-byte blocks = fp16 scale d + 16 bytes of 4-bit q;       w = (q - 8) * d
//         (value j < 16 in the low nibble of byte j, value j >= 16 in the high nibble of byte j - 16)
// W is uint8 [N, K / 32 * block bytes]: nothing is repacked at load. At a model's first inference call
// (kernels/decode.py pack_for_decoding) weights whose N is a multiple of 16 are rearranged, byte for byte, into
// groups of 16 rows ("interleaved", uint8 [N / 16, 16 * K / 32 * block bytes]; the shape tells the layouts apart):
// per group and block column, the 16 rows' fp16 scales (32 bytes), then their quantized bytes four at a time,
// row after row (Q4_0: bytes 4i..4i+3 of each row for i = 0..3; Q8_0: values 4j..4j+3 for j = 0..7). One 64-byte
// load then holds four consecutive weights of 16 rows, so a dpbusd against four broadcast input bytes advances
// 16 output rows at once, one row per int32 lane: no horizontal sums, the 16 scales converted in one
// instruction, ~2 instructions per block where the row-major loop needs ~12. AVX2 builds take each 32-byte half
// (8 rows) with maddubs + madd in place of dpbusd.
//
// Decoding (M <= 8) is bound by how fast the blocks are turned into products, so, as llama.cpp does, each
// input row is quantized once per call to int8 blocks of 32 (scale max|x| / 127, round to nearest even) and
// every block pair is one integer dot product, scaled by d_w * d_x into float32 accumulators:
// - AVX-512 VNNI: dpbusd (u8 x s8). Weights enter as unsigned bytes (Q4_0 nibbles 0..15; Q8_0 q + 128) and
//   the offset (8 or 128 times the sum of the input block's four values behind each int32 lane) is the
//   accumulator's start value, computed once per input block, so it costs no instruction per weight block;
// - AVX2: maddubs + madd (Q4_0 as above; Q8_0 with |w| and the input's sign moved over, which stays below
//   int16 saturation);
// - plain C++ otherwise.
// `exact` keeps the input in float32 instead: each block is dequantized in registers to the very values
// gguf/dequant.py produces (q * d rounded once) and multiplied as float32 (slower; for checks and users who
// want the dequantized model's numbers). Prefill (M > 8) on regrouped blocks runs the same int8 products, each
// group of 16 weight rows read once against all input rows; on the file's layout, or with `exact`, it dequantizes
// row chunks to float32 and uses torch's matmul on them. No full-precision copy of a weight ever exists.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemv.h"

namespace formers_quant {

constexpr int kBlock = 32;
enum Format : int64_t { kQ8_0 = 0, kQ4_0 = 1 };
constexpr int64_t block_bytes(int64_t format) { return format == kQ8_0 ? 34 : 18; }

inline float scale_of(const uint8_t* block) {
  uint16_t bits;
  std::memcpy(&bits, block, 2);
#if defined(__F16C__)
  return _cvtsh_ss(bits);
#else
  return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
#endif
}

#if defined(__AVX2__)
// a Q4_0 block's 32 values 0..15 as bytes in element order: low nibbles, then high nibbles
inline __m256i nibbles(const uint8_t* block) {
  __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2)));
  v = _mm256_srlv_epi32(v, _mm256_set_epi32(4, 4, 4, 4, 0, 0, 0, 0));  // high half: the high nibbles
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}
#endif

// The integer values of one block (Q4_0 with its -8 applied), in element order.
template <int F>
inline void block_values(const uint8_t* block, int8_t* q) {
  if constexpr (F == kQ8_0) {
    std::memcpy(q, block + 2, kBlock);
  } else {
#if defined(__AVX2__)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_sub_epi8(nibbles(block), _mm256_set1_epi8(8)));
#else
    for (int j = 0; j < 16; ++j) {
      q[j] = static_cast<int8_t>((block[2 + j] & 0x0F) - 8);
      q[j + 16] = static_cast<int8_t>((block[2 + j] >> 4) - 8);
    }
#endif
  }
}

// ---------------------------------------------------------------------------------------------------
// inputs quantized to int8 blocks: q [M, K], d [M, K / 32], and per block 8 int32 lane start values
// (-offset * the sum of 4 consecutive q), the correction for weights that enter the dot as unsigned bytes
struct QuantizedInput {
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int32_t> start;
  std::vector<int32_t> total;  // per block: the sum of its 8 lane start values (the interleaved kernel's start)
};

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
template <int F>
constexpr int kOffset = F == kQ8_0 ? 128 : 8;
#elif defined(__AVX2__)
template <int F>
constexpr int kOffset = F == kQ8_0 ? 0 : 8;  // AVX2's Q8_0 dot takes signed weights (sign trick)
#else
template <int F>
constexpr int kOffset = 0;  // the plain loop multiplies signed values
#endif

template <int F>
void quantize_input(const float* x, int64_t M, int64_t K, QuantizedInput& out) {
  const int64_t nb = K / kBlock;
  out.q.resize(M * K);
  out.d.resize(M * nb);
  out.start.resize(M * nb * 8);
  out.total.resize(M * nb);
  for (int64_t i = 0; i < M * nb; ++i) {
    const float* v = x + i * kBlock;
    int8_t* q = out.q.data() + i * kBlock;
#if defined(__AVX512F__)
    const __m512 a = _mm512_loadu_ps(v), b = _mm512_loadu_ps(v + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
#elif defined(__AVX2__)
    __m256 part[4], top = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      part[j] = _mm256_loadu_ps(v + 8 * j);
      top = _mm256_max_ps(top, _mm256_andnot_ps(_mm256_set1_ps(-0.f), part[j]));  // |v|
    }
    __m128 top4 = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps(top, 1));
    top4 = _mm_max_ps(top4, _mm_movehl_ps(top4, top4));
    const float amax = _mm_cvtss_f32(_mm_max_ss(top4, _mm_movehdup_ps(top4)));
#else
    float amax = 0.f;
    for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
#endif
    const float d = amax / 127.f, inv = d != 0.f ? 1.f / d : 0.f;
    out.d[i] = d;
#if defined(__AVX512F__)
    const __m512 s = _mm512_set1_ps(inv);  // cvtps rounds to nearest even (the default MXCSR mode)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a, s))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(b, s))));
#elif defined(__AVX2__)
    __m256i whole[4];  // cvtps rounds to nearest even, as nearbyint in the default mode; |values| <= 127
    for (int j = 0; j < 4; ++j) whole[j] = _mm256_cvtps_epi32(_mm256_mul_ps(part[j], _mm256_set1_ps(inv)));
    // the packs work per 128-bit half: values 0-3 8-11 16-19 24-27 | 4-7 12-15 20-23 28-31, put back in order
    const __m256i bytes =
        _mm256_packs_epi16(_mm256_packs_epi32(whole[0], whole[1]), _mm256_packs_epi32(whole[2], whole[3]));
    const __m256i ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), ordered);
#else
    for (int j = 0; j < kBlock; ++j) q[j] = static_cast<int8_t>(std::nearbyint(v[j] * inv));
#endif
    int32_t* start = out.start.data() + i * 8;
    int32_t total = 0;
    for (int l = 0; l < 8; ++l) {
      start[l] = -kOffset<F> * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
      total += start[l];
    }
    out.total[i] = total;
  }
}

// ---------------------------------------------------------------------------------------------------
// one weight block prepared once, then dotted with each input row's block: 8 int32 lanes, each the sum of
// 4 consecutive products (lane starts included)
#if defined(__AVX2__)
struct Prepared {
  __m256i u;  // the weights as unsigned bytes (|w| for AVX2's Q8_0)
  __m256i w;  // AVX2 Q8_0: the signed weights, whose signs move to the input
};

template <int F>
inline Prepared prepare(const uint8_t* block) {
  if constexpr (F == kQ4_0) {
    return {nibbles(block), __m256i()};
  } else {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return {_mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80))), w};  // q + 128
#else
    return {_mm256_sign_epi8(w, w), w};
#endif
  }
}

template <int F>
inline __m256i dot(const Prepared& p, const int8_t* xq, const int32_t* start) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(start));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(s, p.u, x);
#else
  const __m256i xs = F == kQ8_0 ? _mm256_sign_epi8(x, p.w) : x;
  const __m256i pairs = _mm256_maddubs_epi16(p.u, xs);
  return _mm256_add_epi32(s, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
#endif
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// weight rows [n0, n0 + R) against M quantized input rows
template <int F, int M, int R, typename Y>
inline void quantized_rows(const QuantizedInput& in, const uint8_t* w, int64_t K, const float* bias, Y* y,
                           int64_t ldy, int64_t n0) {
  const int64_t nb = K / kBlock, row_bytes = nb * block_bytes(F);
  __m256 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  const uint8_t* rows = w + n0 * row_bytes;
  for (int64_t b = 0; b < nb; ++b) {
    Prepared p[R];
    float dw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* block = rows + r * row_bytes + b * block_bytes(F);
      p[r] = prepare<F>(block);
      dw[r] = scale_of(block);
    }
    for (int m = 0; m < M; ++m) {
      const int64_t i = m * nb + b;
      const int8_t* xq = in.q.data() + i * kBlock;
      const int32_t* start = in.start.data() + i * 8;
      const float dx = in.d[i];
      for (int r = 0; r < R; ++r)
        acc[m][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot<F>(p[r], xq, start)), _mm256_set1_ps(dw[r] * dx), acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) {
      float s = hsum(acc[m][r]);
      if (bias != nullptr) s += bias[n0 + r];
      y[m * ldy + n0 + r] = static_cast<Y>(s);
    }
}

// one input row: weight rows one after another, each read front to back (one sequential stream, which the
// hardware prefetcher follows; interleaving short rows halved the bandwidth), two blocks per step
template <int F, typename Y>
inline void quantized_single_row(const QuantizedInput& in, const uint8_t* w, int64_t K, const float* bias, Y* y,
                                 int64_t begin, int64_t end) {
  const int64_t nb = K / kBlock, row_bytes = nb * block_bytes(F);
  for (int64_t n = begin; n < end; ++n) {
    const uint8_t* row = w + n * row_bytes;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      const uint8_t* b0 = row + b * block_bytes(F);
      const uint8_t* b1 = b0 + block_bytes(F);
      const __m256i i0 = dot<F>(prepare<F>(b0), in.q.data() + b * kBlock, in.start.data() + b * 8);
      const __m256i i1 = dot<F>(prepare<F>(b1), in.q.data() + (b + 1) * kBlock, in.start.data() + (b + 1) * 8);
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_set1_ps(scale_of(b0) * in.d[b]), a0);
      a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1), _mm256_set1_ps(scale_of(b1) * in.d[b + 1]), a1);
    }
    if (b < nb) {
      const uint8_t* b0 = row + b * block_bytes(F);
      const __m256i i0 = dot<F>(prepare<F>(b0), in.q.data() + b * kBlock, in.start.data() + b * 8);
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0), _mm256_set1_ps(scale_of(b0) * in.d[b]), a0);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    if (bias != nullptr) s += bias[n];
    y[n] = static_cast<Y>(s);
  }
}
#else
template <int F, int M, int R, typename Y>
inline void quantized_rows(const QuantizedInput& in, const uint8_t* w, int64_t K, const float* bias, Y* y,
                           int64_t ldy, int64_t n0) {
  const int64_t nb = K / kBlock, row_bytes = nb * block_bytes(F);
  for (int r = 0; r < R; ++r) {
    const uint8_t* row = w + (n0 + r) * row_bytes;
    for (int m = 0; m < M; ++m) {
      float s = 0.f;
      for (int64_t b = 0; b < nb; ++b) {
        int8_t q[kBlock];
        block_values<F>(row + b * block_bytes(F), q);
        const int8_t* xq = in.q.data() + (m * nb + b) * kBlock;
        int32_t dot = 0;
        for (int j = 0; j < kBlock; ++j) dot += q[j] * xq[j];
        s += static_cast<float>(dot) * (scale_of(row + b * block_bytes(F)) * in.d[m * nb + b]);
      }
      if (bias != nullptr) s += bias[n0 + r];
      y[m * ldy + n0 + r] = static_cast<Y>(s);
    }
  }
}

template <int F, typename Y>
inline void quantized_single_row(const QuantizedInput& in, const uint8_t* w, int64_t K, const float* bias, Y* y,
                                 int64_t begin, int64_t end) {
  for (int64_t n = begin; n < end; ++n) quantized_rows<F, 1, 1>(in, w, K, bias, y, 0, n);
}
#endif

// float32 inputs: weight rows [n0, n0 + R) dequantized block by block in registers (q * d, as dequant.py)
template <int F, int M, int R, typename Y>
inline void exact_rows(const float* x, const uint8_t* w, int64_t K, const float* bias, Y* y, int64_t ldy,
                       int64_t n0) {
  using namespace formers_gemv;
  const int64_t nb = K / kBlock, row_bytes = nb * block_bytes(F);
  Vec acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = vzero();
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* block = w + (n0 + r) * row_bytes + b * block_bytes(F);
      int8_t q[kBlock];
      block_values<F>(block, q);
      const float d = scale_of(block);
      for (int k = 0; k < kBlock; k += kLanes) {
        Vec wv = vload(q + k);
#if defined(__AVX512F__)
        wv = _mm512_mul_ps(wv, _mm512_set1_ps(d));
#elif defined(__AVX2__) && defined(__FMA__)
        wv = _mm256_mul_ps(wv, _mm256_set1_ps(d));
#else
        wv = wv * d;
#endif
        for (int m = 0; m < M; ++m) acc[m][r] = vfma(wv, vload(x + m * K + b * kBlock + k), acc[m][r]);
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) {
      float s = vsum(acc[m][r]);
      if (bias != nullptr) s += bias[n0 + r];
      y[m * ldy + n0 + r] = static_cast<Y>(s);
    }
}

template <bool Exact, int F, int M, typename Y>
void rows_range(const QuantizedInput& in, const float* x, const uint8_t* w, int64_t K, const float* bias, Y* y,
                int64_t ldy, int64_t begin, int64_t end) {
  constexpr int R = M <= 2 ? 4 : 2;
  auto some = [&](auto rows, int64_t n) {
    constexpr int r = decltype(rows)::value;
    if constexpr (Exact) exact_rows<F, M, r>(x, w, K, bias, y, ldy, n);
    else quantized_rows<F, M, r>(in, w, K, bias, y, ldy, n);
  };
  if constexpr (M == 1 && !Exact) return quantized_single_row<F>(in, w, K, bias, y, begin, end);
  int64_t n = begin;
  for (; n + R <= end; n += R) some(std::integral_constant<int, R>(), n);
  for (; n < end; ++n) some(std::integral_constant<int, 1>(), n);
}

// ---------------------------------------------------------------------------------------------------
// the interleaved layout (top of this file): groups of 16 rows
constexpr int64_t kGroup = 16;

// row `lane` of a group back as row-major blocks: raw [nb * block bytes]
template <int F>
void deinterleave_row(const uint8_t* group, int64_t nb, int64_t lane, uint8_t* raw) {
  constexpr int64_t bb = block_bytes(F), words = (bb - 2) / 4;  // 4-byte pieces of quantized bytes per block
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* column = group + b * kGroup * bb;
    uint8_t* block = raw + b * bb;
    std::memcpy(block, column + 2 * lane, 2);
    for (int64_t i = 0; i < words; ++i) std::memcpy(block + 2 + 4 * i, column + 2 * kGroup + (i * kGroup + lane) * 4, 4);
  }
}

// a group's 16 rows back as row-major blocks: raw [16, nb * block bytes]
template <int F>
void deinterleave_group(const uint8_t* group, int64_t nb, uint8_t* raw) {
  for (int64_t r = 0; r < kGroup; ++r) deinterleave_row<F>(group, nb, r, raw + r * nb * block_bytes(F));
}

// four input bytes as one int32, to broadcast against four weights of each row
inline int32_t word_at(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define FORMERS_INTERLEAVED_KERNEL 1
constexpr bool kInterleavedKernel = true;

inline __m512i broadcast_word(const int8_t* p) { return _mm512_set1_epi32(word_at(p)); }

// one group's 16 output rows (one per lane) against the M quantized input rows from row m0 on
template <int F, int M, typename Y>
inline void interleaved_group(const QuantizedInput& in, int64_t m0, const uint8_t* group, int64_t nb, const float* bias,
                              Y* y, int64_t ldy, int64_t n0) {
  constexpr int64_t bb = block_bytes(F);
  __m512 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* column = group + b * kGroup * bb;
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(column)));
    __m512i w[8];  // w[j]: weights 4j..4j+3 of the 16 rows, as unsigned bytes
    if constexpr (F == kQ4_0) {
      const __m512i low = _mm512_set1_epi8(0x0F);
      for (int i = 0; i < 4; ++i) {
        const __m512i v = _mm512_loadu_si512(column + 32 + 64 * i);
        w[i] = _mm512_and_si512(v, low);
        w[i + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
      }
    } else {
      const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));  // q + 128
      for (int j = 0; j < 8; ++j) w[j] = _mm512_xor_si512(_mm512_loadu_si512(column + 32 + 64 * j), flip);
    }
    for (int m = 0; m < M; ++m) {
      const int64_t i = (m0 + m) * nb + b;
      const int8_t* xq = in.q.data() + i * kBlock;
      __m512i s0 = _mm512_set1_epi32(in.total[i]), s1 = _mm512_setzero_si512();  // two chains: half the latency
      for (int j = 0; j < 4; ++j) {
        s0 = _mm512_dpbusd_epi32(s0, w[j], broadcast_word(xq + 4 * j));
        s1 = _mm512_dpbusd_epi32(s1, w[j + 4], broadcast_word(xq + 4 * j + 16));
      }
      const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(in.d[i]));
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), scale, acc[m]);
    }
  }
  for (int m = 0; m < M; ++m) {
    alignas(64) float out[kGroup];
    _mm512_store_ps(out, bias != nullptr ? _mm512_add_ps(acc[m], _mm512_loadu_ps(bias + n0)) : acc[m]);
    for (int r = 0; r < kGroup; ++r) y[m * ldy + n0 + r] = static_cast<Y>(out[r]);
  }
}
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define FORMERS_INTERLEAVED_KERNEL 1
constexpr bool kInterleavedKernel = true;

inline __m256i broadcast_word(const int8_t* p) { return _mm256_set1_epi32(word_at(p)); }

// AVX2: half h (rows 8h..8h+7, one per lane) of a group against the M quantized input rows from row m0 on. maddubs
// + madd stand in for dpbusd: Q4_0 nibbles (0..15) times int8 inputs, whose eight pair sums per lane stay within
// int16 (8 x 2 x 15 x 127) and are widened once per block; Q8_0 as |w| times the input carrying w's sign (a pair
// stays within int16: 2 x 128 x 127), widened per four values.
template <int F, int M, typename Y>
inline void interleaved_half(const QuantizedInput& in, int64_t m0, const uint8_t* group, int64_t nb, int h,
                             const float* bias, Y* y, int64_t ldy, int64_t n0) {
  constexpr int64_t bb = block_bytes(F);
  const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[M];
  for (int m = 0; m < M; ++m) acc[m] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* column = group + b * kGroup * bb;
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(column + 16 * h)));
    const uint8_t* pieces = column + 32 + 32 * h;  // this half's 8 rows x 4 bytes of piece j at pieces + 64 j
    const auto piece = [&](int j) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pieces + 64 * j)); };
    for (int m = 0; m < M; ++m) {
      const int64_t i = (m0 + m) * nb + b;
      const int8_t* xq = in.q.data() + i * kBlock;
      __m256i s = _mm256_set1_epi32(in.total[i]);
      if constexpr (F == kQ4_0) {
        __m256i pairs = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {
          const __m256i v = piece(j);
          pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(_mm256_and_si256(v, low), broadcast_word(xq + 4 * j)));
          pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), low),
                                                               broadcast_word(xq + 16 + 4 * j)));
        }
        s = _mm256_add_epi32(s, _mm256_madd_epi16(pairs, ones));
      } else {
        for (int j = 0; j < 8; ++j) {
          const __m256i w = piece(j);
          const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(broadcast_word(xq + 4 * j), w));
          s = _mm256_add_epi32(s, _mm256_madd_epi16(pairs, ones));
        }
      }
      acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(in.d[i])), acc[m]);
    }
  }
  const int64_t first = n0 + 8 * h;
  for (int m = 0; m < M; ++m) {
    alignas(32) float out[8];
    _mm256_store_ps(out, bias != nullptr ? _mm256_add_ps(acc[m], _mm256_loadu_ps(bias + first)) : acc[m]);
    for (int r = 0; r < 8; ++r) y[m * ldy + first + r] = static_cast<Y>(out[r]);
  }
}

// one group's 16 output rows against the M quantized input rows from row m0 on: its two halves in turn (the
// group's bytes are in L1 for the second)
template <int F, int M, typename Y>
inline void interleaved_group(const QuantizedInput& in, int64_t m0, const uint8_t* group, int64_t nb, const float* bias,
                              Y* y, int64_t ldy, int64_t n0) {
  for (int h = 0; h < 2; ++h) interleaved_half<F, M>(in, m0, group, nb, h, bias, y, ldy, n0);
}
#else
constexpr bool kInterleavedKernel = false;  // other builds compute each group from its row-major copy
#endif

// output rows [begin, end) (multiples of 16) of an interleaved weight
template <bool Exact, int F, int M, typename Y>
void groups_range(const QuantizedInput& in, const float* x, const uint8_t* w, int64_t K, const float* bias, Y* y,
                  int64_t ldy, int64_t begin, int64_t end) {
  const int64_t nb = K / kBlock, group_bytes = kGroup * nb * block_bytes(F);
  for (int64_t n = begin; n < end; n += kGroup) {
    const uint8_t* group = w + n / kGroup * group_bytes;
#if defined(FORMERS_INTERLEAVED_KERNEL)
    if constexpr (!Exact) {
      interleaved_group<F, M>(in, 0, group, nb, bias, y, ldy, n);
      continue;
    }
#endif
    static thread_local std::vector<uint8_t> raw;  // this worker's own
    raw.resize(group_bytes);
    deinterleave_group<F>(group, nb, raw.data());
    rows_range<Exact, F, M>(in, x, raw.data(), K, bias != nullptr ? bias + n : nullptr, y + n, ldy, 0, kGroup);
  }
}

template <bool Exact, int F, typename Y>
void rows_any_m(int64_t M, bool interleaved, const QuantizedInput& in, const float* x, const uint8_t* w, int64_t K,
                const float* bias, Y* y, int64_t ldy, int64_t begin, int64_t end) {
  formers_gemv::with_rows(M, [&](auto rows) {
    constexpr int Mc = decltype(rows)::value;
    if (interleaved) groups_range<Exact, F, Mc>(in, x, w, K, bias, y, ldy, begin, end);
    else rows_range<Exact, F, Mc>(in, x, w, K, bias, y, ldy, begin, end);
  });
}

// how a uint8 weight for K inputs is stored: its format (-1: neither) and whether it is interleaved
struct Layout {
  int64_t format = -1;
  bool interleaved = false;
};

inline Layout layout_of(const at::Tensor& w, int64_t K) {
  if (K % kBlock || w.dim() != 2) return {};
  for (int64_t format : {int64_t(kQ8_0), int64_t(kQ4_0)}) {
    const int64_t row = K / kBlock * block_bytes(format);
    if (w.size(1) == row) return {format, false};
    if (w.size(1) == kGroup * row) return {format, true};
  }
  return {};
}

// the output rows of a weight: N, whichever layout holds it
inline int64_t rows_of(const at::Tensor& w, int64_t K) {
  return w.scalar_type() == at::kByte && layout_of(w, K).interleaved ? w.size(0) * kGroup : w.size(0);
}

// y [M, N] for M <= 8 rows, split over the pool like the float GEMVs
template <int F, typename Y>
void small_batch(const float* x, int64_t M, int64_t K, const uint8_t* w, int64_t N, bool interleaved,
                 const float* bias, Y* y, bool exact) {
  static thread_local QuantizedInput reused;  // no allocation per call once it has grown
  QuantizedInput& in = reused;  // the caller's: a thread-local named in the lambda would be each worker's own
  if (!exact) quantize_input<F>(x, M, K, in);
  const std::vector<formers_gemv::Job> jobs{{w, bias, y, N, 0}};
  const int64_t chunks = (N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
  formers_gemv::run_chunks(jobs, chunks, N * (K / kBlock) * block_bytes(F), [&](const formers_gemv::Job&, int64_t b, int64_t e) {
    if (exact) rows_any_m<true, F>(M, interleaved, in, x, w, K, bias, y, N, b, e);
    else rows_any_m<false, F>(M, interleaved, in, x, w, K, bias, y, N, b, e);
  });
}

// y_i [M, N_i] (float32) = x [M, K] @ W_i^T + b_i for block weights sharing one input (decode_layer.h's Q/K/V and
// gate/up groups), in one parallel region; the input is quantized once per format present.
inline void blocks_into(const float* x, int64_t M, int64_t K, const std::vector<at::Tensor>& ws,
                        const std::vector<const float*>& biases, const std::vector<float*>& outs) {
  static thread_local QuantizedInput reused8, reused4;
  QuantizedInput &in8 = reused8, &in4 = reused4;  // the caller's (see small_batch)
  std::vector<formers_gemv::Job> jobs;
  std::vector<Layout> layouts;
  bool has8 = false, has4 = false;
  int64_t chunks = 0, bytes = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const Layout layout = layout_of(ws[i], K);
    TORCH_CHECK(ws[i].scalar_type() == at::kByte && ws[i].is_contiguous() && layout.format >= 0,
                "blocks: weights must be contiguous uint8 Q8_0 / Q4_0 blocks [N, K / 32 * block bytes] or their "
                "16-row groups [N / 16, 16 * K / 32 * block bytes]");
    has8 |= layout.format == kQ8_0;
    has4 |= layout.format == kQ4_0;
    layouts.push_back(layout);
    const int64_t N = rows_of(ws[i], K);
    jobs.push_back({ws[i].data_ptr(), biases[i], outs[i], N, chunks});
    chunks += (N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
    bytes += ws[i].numel();
  }
  if (has8) quantize_input<kQ8_0>(x, M, K, in8);
  if (has4) quantize_input<kQ4_0>(x, M, K, in4);
  formers_gemv::run_chunks(jobs, chunks, bytes, [&](const formers_gemv::Job& job, int64_t b, int64_t e) {
    const uint8_t* w = static_cast<const uint8_t*>(job.w);
    float* y = static_cast<float*>(job.y);
    const Layout& layout = layouts[&job - jobs.data()];
    if (layout.format == kQ8_0) rows_any_m<false, kQ8_0>(M, layout.interleaved, in8, x, w, K, job.bias, y, job.N, b, e);
    else rows_any_m<false, kQ4_0>(M, layout.interleaved, in4, x, w, K, job.bias, y, job.N, b, e);
  });
}

// rows [n0, n1) of a row-major weight as float32 [n1 - n0, K] (the same values as gguf/dequant.py)
template <int F>
void dequantize_rows(const uint8_t* w, int64_t K, int64_t n0, int64_t n1, float* out) {
  const int64_t nb = K / kBlock, row_bytes = nb * block_bytes(F);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* block = w + n * row_bytes + b * block_bytes(F);
      int8_t q[kBlock];
      block_values<F>(block, q);
      const float d = scale_of(block);
      float* o = out + (n - n0) * K + b * kBlock;
      for (int j = 0; j < kBlock; ++j) o[j] = static_cast<float>(q[j]) * d;
    }
}

#if defined(FORMERS_INTERLEAVED_KERNEL)
// y [M, N] for many rows (prefill) of an interleaved weight: the input quantized once, then each group of 16 weight
// rows, read from memory once, against every input row 8 at a time while it sits in L1
template <int F>
void grouped_prefill(const float* x, int64_t M, int64_t K, const uint8_t* w, int64_t N, const float* bias, float* y) {
  static thread_local QuantizedInput reused;
  QuantizedInput& in = reused;  // the caller's (see small_batch)
  quantize_input<F>(x, M, K, in);
  const int64_t nb = K / kBlock, group_bytes = kGroup * nb * block_bytes(F);
  const std::vector<formers_gemv::Job> jobs{{w, bias, y, N, 0}};
  formers_gemv::run_chunks(jobs, N / kGroup, N * nb * block_bytes(F), [&](const formers_gemv::Job&, int64_t b, int64_t e) {
    for (int64_t n = b; n < e; n += kGroup) {
      const uint8_t* group = w + n / kGroup * group_bytes;
      for (int64_t m0 = 0; m0 < M; m0 += 8)  // with_rows: the last tile's 1..7 rows, else 8
        formers_gemv::with_rows(M - m0, [&](auto rows) {
          interleaved_group<F, decltype(rows)::value>(in, m0, group, nb, bias, y + m0 * N, N, n);
        });
    }
  }, M);
}
#endif

// the same for either layout (interleaved: n0 and n1 multiples of 16, or n1 = N)
template <int F>
void dequantize_any(const uint8_t* w, int64_t K, bool interleaved, int64_t n0, int64_t n1, float* out) {
  if (!interleaved) return dequantize_rows<F>(w, K, n0, n1, out);
  const int64_t nb = K / kBlock, group_bytes = kGroup * nb * block_bytes(F);
  static thread_local std::vector<uint8_t> raw;  // this worker's own
  raw.resize(group_bytes);
  for (int64_t n = n0; n < n1; n += kGroup) {
    deinterleave_group<F>(w + n / kGroup * group_bytes, nb, raw.data());
    dequantize_rows<F>(raw.data(), K, 0, std::min(kGroup, n1 - n), out + (n - n0) * K);
  }
}

// rows `index` (n of them) of a weight in either layout, dequantized: out [n, K] float32, the values the gguf
// package's dequantizer gives (scale times quantized value); QuantizedEmbedding's lookups
template <int F>
void dequantize_picked(const uint8_t* w, int64_t N, int64_t K, bool interleaved, const int64_t* index, int64_t n,
                       float* out) {
  const int64_t row_bytes = K / kBlock * block_bytes(F);
  std::vector<uint8_t> raw(interleaved ? row_bytes : 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = index[i];
    TORCH_CHECK_INDEX(r >= 0 && r < N, "index ", r, " is out of range for an embedding of ", N, " rows");
    if (interleaved) deinterleave_row<F>(w + r / kGroup * kGroup * row_bytes, K / kBlock, r % kGroup, raw.data());
    dequantize_rows<F>(interleaved ? raw.data() : w + r * row_bytes, K, 0, 1, out + i * K);
  }
}

inline at::Tensor picked_rows(const at::Tensor& blocks, const at::Tensor& index, int64_t format, int64_t K) {
  TORCH_CHECK(format == kQ8_0 || format == kQ4_0, "quant_rows: format must be 0 (Q8_0) or 1 (Q4_0)");
  TORCH_CHECK(K % kBlock == 0 && K > 0, "quant_rows: the row width must be a positive multiple of 32, got ", K);
  const Layout layout = layout_of(blocks, K);
  TORCH_CHECK(blocks.scalar_type() == at::kByte && blocks.is_contiguous() && layout.format == format,
              "quant_rows: blocks must be contiguous uint8 [N, K / 32 * ", block_bytes(format), "] or its 16-row groups");
  const at::Tensor ids = index.to(at::kLong).contiguous();
  at::Tensor out = at::empty({ids.numel(), K}, blocks.options().dtype(at::kFloat));
  const int64_t N = rows_of(blocks, K);
  if (format == kQ8_0) dequantize_picked<kQ8_0>(blocks.data_ptr<uint8_t>(), N, K, layout.interleaved, ids.data_ptr<int64_t>(), ids.numel(), out.data_ptr<float>());
  else dequantize_picked<kQ4_0>(blocks.data_ptr<uint8_t>(), N, K, layout.interleaved, ids.data_ptr<int64_t>(), ids.numel(), out.data_ptr<float>());
  return out;
}

// ---------------------------------------------------------------------------------------------------
// the binding: x [..., K] (float32 or bfloat16) @ W^T (+ bias) -> [..., N] in x's dtype, W in either layout
inline at::Tensor linear(const at::Tensor& x, const at::Tensor& blocks, int64_t format,
                         const c10::optional<at::Tensor>& bias, bool exact) {
  TORCH_CHECK(format == kQ8_0 || format == kQ4_0, "quant_linear: format must be 0 (Q8_0) or 1 (Q4_0)");
  const int64_t K = x.size(-1), M = K == 0 ? 0 : x.numel() / K;
  TORCH_CHECK(K % kBlock == 0 && K > 0, "quant_linear: in_features must be a positive multiple of 32, got ", K);
  const Layout layout = layout_of(blocks, K);
  TORCH_CHECK(blocks.scalar_type() == at::kByte && blocks.is_contiguous() && layout.format == format,
              "quant_linear: blocks must be contiguous uint8 [N, K / 32 * ", block_bytes(format),
              "] or [N / 16, 16 * K / 32 * ", block_bytes(format), "]");
  const int64_t N = rows_of(blocks, K);
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "quant_linear: x must be float32 or bfloat16");
  const at::Tensor xf = x.to(at::kFloat).contiguous().reshape({M, K});
  at::Tensor bf;
  if (bias.has_value() && bias->defined()) bf = bias->to(at::kFloat).contiguous();
  const float* bp = bf.defined() ? bf.data_ptr<float>() : nullptr;
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  const uint8_t* w = blocks.data_ptr<uint8_t>();
  const bool il = layout.interleaved;
  if (M <= 8) {
    at::Tensor out = at::empty({M, N}, x.options().dtype(at::kFloat));
    if (M > 0) {
      if (format == kQ8_0) small_batch<kQ8_0>(xf.data_ptr<float>(), M, K, w, N, il, bp, out.data_ptr<float>(), exact);
      else small_batch<kQ4_0>(xf.data_ptr<float>(), M, K, w, N, il, bp, out.data_ptr<float>(), exact);
    }
    return out.to(dtype).reshape(shape);
  }
  at::Tensor out = at::empty({M, N}, x.options().dtype(at::kFloat));
#if defined(FORMERS_INTERLEAVED_KERNEL)
  if (il && !exact) {  // prefill on regrouped blocks: int8 products as in decoding
    if (format == kQ8_0) grouped_prefill<kQ8_0>(xf.data_ptr<float>(), M, K, w, N, bp, out.data_ptr<float>());
    else grouped_prefill<kQ4_0>(xf.data_ptr<float>(), M, K, w, N, bp, out.data_ptr<float>());
    return out.to(dtype).reshape(shape);
  }
#endif
  // prefill otherwise: ~1 MiB float32 row chunks of the weight, dequantized on the pool's threads, then torch's GEMM
  const int64_t rows = std::max<int64_t>(16, ((1 << 18) / K) / 16 * 16);
  at::Tensor chunk = at::empty({rows, K}, x.options().dtype(at::kFloat));
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t n1 = std::min(N, n0 + rows);
    float* c = chunk.data_ptr<float>();
    const std::vector<formers_gemv::Job> jobs{{w, nullptr, nullptr, n1 - n0, 0}};
    const int64_t pieces = (n1 - n0 + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
    formers_gemv::run_chunks(jobs, pieces, (n1 - n0) * K * 4, [&](const formers_gemv::Job&, int64_t b, int64_t e) {
      if (format == kQ8_0) dequantize_any<kQ8_0>(w, K, il, n0 + b, n0 + e, c + b * K);
      else dequantize_any<kQ4_0>(w, K, il, n0 + b, n0 + e, c + b * K);
    }, M);
    at::Tensor target = out.narrow(1, n0, n1 - n0);
    at::mm_out(target, xf, chunk.narrow(0, 0, n1 - n0).t());
  }
  if (bf.defined()) out.add_(bf);
  return out.to(dtype).reshape(shape);
}

}  // namespace formers_quant
