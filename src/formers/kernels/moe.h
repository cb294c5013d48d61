// A sparse mixture-of-experts feed-forward block for a few tokens (decoding: 1 to 8 rows) in one call:
//   router logits = x @ Wr^T;  each token picks its top-k experts (the routing variants below);
//   out[t] = sum over its experts e, ascending e, of w[t, e] * down_e(silu(gate_e(x_t)) * up_e(x_t))
//            (+ sigmoid(x_t . g) * shared_down(silu(shared_gate(x_t)) * shared_up(x_t)) with a shared expert).
// Every chosen expert's gate and up products run in ONE parallel region (each expert on the rows routed
// to it, so a weight is read once per step however many tokens chose it), then every down product in a
// second; idle experts are never read and nothing returns to Python between the router and the output.
// Float32 only. Numerics follow the module path (formers/modeling/moe.py): float32 softmax, the k terms
// added one by one in ascending expert order; products differ from torch's by summation order only.
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "decode_layer.h"
#include "gemv.h"

namespace formers_moe {

struct Routing {
  int64_t top_k;
  bool softmax_after_topk;  // GraniteMoE: softmax over the k best logits
  bool renorm;              // the k probabilities renormalised to sum 1 (norm_topk_prob)
  double p;                 // > 0: divide the k probabilities by their p-norm instead (DBRX)
};

// One token's experts: logits [E] -> (ids [k] ascending, weights [k] in the same order).
inline void route(const float* logits, int64_t E, const Routing& r, int64_t* ids, float* weights) {
  const int64_t k = r.top_k;
  std::vector<int64_t> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const float top = logits[order[0]];
  std::vector<float> w(k);
  if (r.softmax_after_topk) {
    float total = 0.f;
    for (int64_t j = 0; j < k; ++j) total += (w[j] = std::exp(logits[order[j]] - top));
    for (int64_t j = 0; j < k; ++j) w[j] /= total;
  } else {
    float total = 0.f;
    for (int64_t e = 0; e < E; ++e) total += std::exp(logits[e] - top);
    for (int64_t j = 0; j < k; ++j) w[j] = std::exp(logits[order[j]] - top) / total;
    if (r.p > 0) {
      float norm = 0.f;
      for (int64_t j = 0; j < k; ++j) norm += std::pow(std::fabs(w[j]), static_cast<float>(r.p));
      norm = std::pow(norm, static_cast<float>(1.0 / r.p));
      for (int64_t j = 0; j < k; ++j) w[j] /= norm;
    } else if (r.renorm) {
      float total_k = 0.f;
      for (int64_t j = 0; j < k; ++j) total_k += w[j];
      for (int64_t j = 0; j < k; ++j) w[j] /= total_k;
    }
  }
  std::vector<int64_t> slots(k);
  std::iota(slots.begin(), slots.end(), 0);
  std::sort(slots.begin(), slots.end(), [&](int64_t a, int64_t b) { return order[a] < order[b]; });
  for (int64_t j = 0; j < k; ++j) {
    ids[j] = order[slots[j]];
    weights[j] = w[slots[j]];
  }
}

// One product of a parallel region: y [M, N] = x [M, K] @ w [N, K]^T, float32.
struct Product {
  const float* x;
  int64_t M, K;
  const float* w;
  int64_t N;
  float* y;
};

// Rows [begin, end) of w [N, K] against M input rows, each weight row read front to back once: one sequential
// stream per row, as gemv.h's single_row reads for one input row (its R-row blocks interleave R streams, which
// read an expert's weights ~35% slower at 2 to 4 rows; an expert gets ~2 rows when decoding 8 sequences).
template <int M>
void stream_rows(const float* x, const float* w, int64_t K, float* y, int64_t ldy, int64_t begin, int64_t end) {
  using namespace formers_gemv;
  const int64_t kv = K - K % kLanes;
  for (int64_t n = begin; n < end; ++n) {
    const float* row = w + n * K;
    Vec acc[M];
    for (int m = 0; m < M; ++m) acc[m] = vzero();
    for (int64_t k = 0; k < kv; k += kLanes) {
      const Vec wr = vload(row + k);
      for (int m = 0; m < M; ++m) acc[m] = vfma(wr, vload(x + m * K + k), acc[m]);
    }
    for (int m = 0; m < M; ++m) {
      float s = vsum(acc[m]);
      for (int64_t k = kv; k < K; ++k) s += x[m * K + k] * row[k];
      y[m * ldy + n] = s;
    }
  }
}

inline void stream_rows_any_m(int64_t M, const float* x, const float* w, int64_t K, float* y, int64_t ldy,
                              int64_t begin, int64_t end) {
  switch (M) {
    case 1: return formers_gemv::single_row<float, float>(x, w, K, nullptr, nullptr, y, begin, end);
    case 2: return stream_rows<2>(x, w, K, y, ldy, begin, end);
    case 3: return stream_rows<3>(x, w, K, y, ldy, begin, end);
    case 4: return stream_rows<4>(x, w, K, y, ldy, begin, end);
    case 5: return stream_rows<5>(x, w, K, y, ldy, begin, end);
    case 6: return stream_rows<6>(x, w, K, y, ldy, begin, end);
    case 7: return stream_rows<7>(x, w, K, y, ldy, begin, end);
    default: return stream_rows<8>(x, w, K, y, ldy, begin, end);
  }
}

// All `products` in one parallel region (gemv.h's row chunks; each product reads its own input rows).
inline void run_products(const std::vector<Product>& products) {
  std::vector<formers_gemv::Job> jobs;
  int64_t chunks = 0, bytes = 0;
  for (const Product& p : products) {
    jobs.push_back({p.w, nullptr, p.y, p.N, chunks});
    chunks += (p.N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
    bytes += p.N * p.K * 4;
  }
  formers_gemv::run_chunks(jobs, chunks, bytes, [&](const formers_gemv::Job& job, int64_t begin, int64_t end) {
    const Product& p = products[&job - jobs.data()];
    stream_rows_any_m(p.M, p.x, p.w, p.K, p.y, p.N, begin, end);
  });
}

inline float silu(float v) { return v / (1.f + std::exp(-v)); }

// The weights of one block: per-expert gate/up [I, C] and down [C, I]; the shared expert's (or empty).
struct Experts {
  const at::Tensor* router;
  const std::vector<at::Tensor>* gate;
  const std::vector<at::Tensor>* up;
  const std::vector<at::Tensor>* down;
  const std::vector<at::Tensor>* shared;  // {gate, up, down} or empty
  const at::Tensor* shared_gate;          // [1, C] or undefined
};

// x [M, C] -> out [M, C] and router logits [M, E] (both float32, caller-owned)
inline void moe_forward(const float* x, int64_t M, int64_t C, const Experts& X, const Routing& r, float* out,
                        float* logits) {
  const int64_t E = X.router->size(0), k = r.top_k;
  run_products({{x, M, C, X.router->data_ptr<float>(), E, logits}});
  std::vector<int64_t> ids(M * k);
  std::vector<float> weights(M * k);
  for (int64_t t = 0; t < M; ++t) route(logits + t * E, E, r, ids.data() + t * k, weights.data() + t * k);
  // group the M*k (token, slot) assignments by expert: rows [start[e], start[e + 1]) of the buffers
  std::vector<int64_t> start(E + 1, 0), row_of(M * k), token_of(M * k);
  for (int64_t a = 0; a < M * k; ++a) ++start[ids[a] + 1];
  for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t a = 0; a < M * k; ++a) {
    row_of[a] = fill[ids[a]]++;
    token_of[row_of[a]] = a / k;
  }
  const int64_t I = (*X.gate)[0].size(0), rows = M * k;
  std::vector<float> xg(rows * C), g(rows * I), u(rows * I), y(rows * C);
  for (int64_t row = 0; row < rows; ++row) std::copy(x + token_of[row] * C, x + (token_of[row] + 1) * C, xg.data() + row * C);
  const bool shared = !X.shared->empty();
  const int64_t Is = shared ? (*X.shared)[0].size(0) : 0;
  std::vector<float> sg(M * Is), su(M * Is), sy(M * C), sgate(M, 0.f);
  std::vector<Product> first, second;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t m = start[e + 1] - start[e];
    if (m == 0) continue;
    const float* xe = xg.data() + start[e] * C;
    first.push_back({xe, m, C, (*X.gate)[e].data_ptr<float>(), I, g.data() + start[e] * I});
    first.push_back({xe, m, C, (*X.up)[e].data_ptr<float>(), I, u.data() + start[e] * I});
    second.push_back({g.data() + start[e] * I, m, I, (*X.down)[e].data_ptr<float>(), C, y.data() + start[e] * C});
  }
  if (shared) {
    first.push_back({x, M, C, (*X.shared)[0].data_ptr<float>(), Is, sg.data()});
    first.push_back({x, M, C, (*X.shared)[1].data_ptr<float>(), Is, su.data()});
    if (X.shared_gate->defined()) first.push_back({x, M, C, X.shared_gate->data_ptr<float>(), 1, sgate.data()});
    second.push_back({sg.data(), M, Is, (*X.shared)[2].data_ptr<float>(), C, sy.data()});
  }
  run_products(first);
  for (int64_t i = 0; i < rows * I; ++i) g[i] = silu(g[i]) * u[i];
  for (int64_t i = 0; i < M * Is; ++i) sg[i] = silu(sg[i]) * su[i];
  run_products(second);
  for (int64_t t = 0; t < M; ++t) {
    float* o = out + t * C;
    for (int64_t j = 0; j < k; ++j) {  // ascending expert order (route sorted the slots)
      const float w = weights[t * k + j];
      const float* ye = y.data() + row_of[t * k + j] * C;
      if (j == 0) {
        for (int64_t c = 0; c < C; ++c) o[c] = ye[c] * w;
      } else {
        for (int64_t c = 0; c < C; ++c) o[c] += ye[c] * w;
      }
    }
    if (shared) {
      const float s = X.shared_gate->defined() ? 1.f / (1.f + std::exp(-sgate[t])) : 1.f;
      for (int64_t c = 0; c < C; ++c) o[c] += X.shared_gate->defined() ? s * sy[t * C + c] : sy[t * C + c];
    }
  }
}

// One decoder layer of a mixture-of-experts model for one new token per row (float32): decode_layer.h's
// attention half, then h += moe(RMSNorm(h)). Router logits [B, E] go to `logits`.
inline at::Tensor moe_layer(const at::Tensor& hidden, const formers_decode::Layer& L, const at::Tensor& cos,
                            const at::Tensor& sin, at::Tensor& k_cache, at::Tensor& v_cache, int64_t pos,
                            const at::Tensor& mask, const Experts& X, const Routing& r, float* logits) {
  const int64_t B = hidden.size(0), C = hidden.size(-1);
  std::vector<float> h = formers_decode::floats_of(hidden), n(B * C);
  formers_decode::attention_half<float>(h, B, L, formers_decode::rotary_of(cos, sin, L.D), k_cache, v_cache, pos, mask);
  formers_decode::rms_norm<false>(h.data(), L.ln2.data(), L.eps2, B, C, n.data());
  at::Tensor out = at::empty(hidden.sizes(), hidden.options().memory_format(at::MemoryFormat::Contiguous));
  float* o = out.data_ptr<float>();
  moe_forward(n.data(), B, C, X, r, o, logits);
  for (int64_t i = 0; i < B * C; ++i) o[i] = h[i] + o[i];
  return out;
}

}  // namespace formers_moe
