// bfloat16 linears that equal torch's bit for bit: gemv.h's `run_bf16` with the K chunk torch uses for the
// shape (AVX512_BF16 builds; AVX2 builds have one candidate, torch's per-output dot order), found once per (rows,
// outputs, inputs, bias, threads) by probing torch on this machine, and torch's own linear for a shape nothing
// reproduces (or a build with neither).
//
// The probe's weight rows are mirrored, [v, -v], against an input [u, u]: the exact sum is zero, so what
// comes out is the float32 rounding error of the partial sums, which any other order changes in nearly every
// output (random data moves only ~0.01% of them). A chunk counts only when all outputs are equal, there and on
// plain random data.
#pragma once
#include <torch/extension.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "gemv.h"

namespace formers_bf16 {

using formers_gemv::BFloat16;

// n bfloat16-exact values in about [-2, 2) from a fixed xorshift stream (not torch's generator: probing
// must not move a user's random numbers)
inline at::Tensor probe_values(std::vector<int64_t> shape, uint64_t seed) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  float* p = t.data_ptr<float>();
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    p[i] = static_cast<float>(static_cast<int64_t>(s >> 40) - (1 << 23)) / static_cast<float>(1 << 22);
  }
  return t.to(at::kBFloat16);
}

// the jobs (first_chunk filled in here) in one parallel region
template <typename Y>
void run_jobs(const float* x, int64_t M, int64_t K, std::vector<formers_gemv::Job> jobs) {
  int64_t chunks = 0, bytes = 0;
  for (auto& job : jobs) {
    job.first_chunk = chunks;
    chunks += (job.N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
    bytes += job.N * K * 2;
  }
  if (chunks > 0) formers_gemv::run_bf16<Y>(x, M, K, jobs, chunks, bytes);
}

// whether run_bf16 with `chunk` equals torch's linear (`expected`) on this probe
inline bool reproduces(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, const at::Tensor& expected,
                       int64_t chunk) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const at::Tensor xf = x.to(at::kFloat).contiguous(), bf = bias.defined() ? bias.to(at::kFloat) : at::Tensor();
  at::Tensor y = at::empty({M, N}, x.options());
  formers_gemv::Job job{w.data_ptr(), bf.defined() ? bf.data_ptr<float>() : nullptr, y.data_ptr(), N, 0};
  job.chunk = chunk;
  run_jobs<BFloat16>(xf.data_ptr<float>(), M, K, {job});
  return at::equal(y, expected);
}

// The K chunk with which run_bf16 reproduces torch's bfloat16 linear for M rows, N outputs and K inputs (with or
// without a bias) at the current thread count; 0 where none does (then torch's linear is used).
inline int64_t torch_chunk(int64_t M, int64_t N, int64_t K, bool bias) {
  // torch hands a product to oneDNN only above 16^3 multiply-adds (M * K * N); smaller ones go to MKL or its own
  // loops, whose order is another (a probe on mirrored data once matched one of them by chance). AVX2 builds have
  // one candidate, the dot-product order of torch's own loop (gemv.h, kDotOrder).
  if (!formers_gemv::kBf16Products || (formers_gemv::kTorchOrderBf16 && M * N * K <= 16 * 16 * 16)) return 0;
  // torch's loop there gives each output the same dot product whatever the row count: probing 8 rows stands for
  // more (a prefill's rows) and keeps the probe's cost that of a decode step's
  if (formers_gemv::kTorchDotOrderBf16) M = std::min<int64_t>(M, 8);
  static std::mutex lock;
  static std::map<std::tuple<int64_t, int64_t, int64_t, bool, int>, int64_t> found;
  const auto key = std::make_tuple(M, N, K, bias, at::get_num_threads());
  std::lock_guard<std::mutex> hold(lock);
  const auto hit = found.find(key);
  if (hit != found.end()) return hit->second;
  const int64_t rows = std::min<int64_t>(N, 4096), half = K / 2;  // beyond 4096 rows torch splits only across rows
  const at::Tensor v = probe_values({rows, half}, 1), u = probe_values({M, half}, 2);
  std::vector<at::Tensor> wparts{v, -v}, xparts{u, u};
  if (K % 2 == 1) wparts.push_back(probe_values({rows, 1}, 3)), xparts.push_back(probe_values({M, 1}, 4));
  const at::Tensor w = at::cat(wparts, 1).contiguous(), x = at::cat(xparts, 1).contiguous();
  const at::Tensor b = bias ? probe_values({rows}, 5) : at::Tensor();
  const at::Tensor random_x = probe_values({M, K}, 6), random_w = probe_values({rows, K}, 7);  // and plain data
  at::Tensor expected, random_expected;
  {
    at::NoGradGuard no_grad;
    expected = at::linear(x, w, b);
    random_expected = at::linear(random_x, random_w, b);
  }
  int64_t chunk = 0;
  bool whole = false;  // a chunk of K or more was tried: every longer one is the same single chain
  const std::vector<int64_t> candidates = formers_gemv::kTorchOrderBf16
      ? std::vector<int64_t>{512, 1024, 256, 2048, 128, 4096, 64, 32} : std::vector<int64_t>{formers_gemv::kDotOrder};
  for (int64_t candidate : candidates) {
    if (candidate >= K && std::exchange(whole, true)) continue;
    if (reproduces(x, w, b, expected, candidate) && reproduces(random_x, random_w, b, random_expected, candidate)) {
      chunk = candidate;
      break;
    }
  }
  found[key] = chunk;
  return chunk;
}

// outs[i] [M, N_i] = x @ W_i^T + b_i for bfloat16 weights W_i [N_i, K] and x [M, K] holding bfloat16 values (as
// float32), equal to torch's bfloat16 linear; biases are float32 copies (or nullptr)
template <typename Y>
void linear(const float* x, int64_t M, int64_t K, const std::vector<at::Tensor>& ws, const std::vector<const float*>& biases,
            const std::vector<Y*>& outs) {
  std::vector<formers_gemv::Job> jobs;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor xb;  // x as a bfloat16 tensor, made once if some weight takes torch's linear
  for (size_t i = 0; i < ws.size(); ++i) {
    const int64_t N = ws[i].size(0);
    const int64_t chunk = torch_chunk(M, N, K, biases[i] != nullptr);
    if (chunk != 0) {  // (0: torch's own linear)
      formers_gemv::Job job{ws[i].data_ptr(), biases[i], outs[i], N, 0};
      job.chunk = chunk;
      jobs.push_back(job);
      continue;
    }
    if (!xb.defined()) xb = at::from_blob(const_cast<float*>(x), {M, K}, f32).to(at::kBFloat16);
    const at::Tensor b = biases[i] ? at::from_blob(const_cast<float*>(biases[i]), {N}, f32).to(at::kBFloat16) : at::Tensor();
    at::Tensor y;
    {
      at::NoGradGuard no_grad;
      y = at::linear(xb, ws[i], b);
    }
    const at::Tensor yc = y.to(std::is_same_v<Y, float> ? at::kFloat : at::kBFloat16).contiguous();
    std::memcpy(outs[i], yc.data_ptr(), static_cast<size_t>(M * N) * sizeof(Y));
  }
  run_jobs<Y>(x, M, K, std::move(jobs));
}

}  // namespace formers_bf16
