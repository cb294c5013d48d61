// Python bindings of formers' CPU decode kernels: gemv / gemv_group (gemv.h) and decode_layer
// (decode_layer.h). Built by formers/kernels/build.py.
#include <torch/extension.h>
#include <ATen/record_function.h>

#include "bf16_match.h"
#include "decode_layer.h"
#include "gemv.h"
#include "moe.h"
#include "quant.h"

namespace {

using formers_gemv::BFloat16;
using formers_gemv::Job;

// x [..., K] (M = product of the leading sizes, 1 <= M <= 8) -> one output [..., N_i] of x's dtype per weight
std::vector<at::Tensor> gemv_group(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                   const std::vector<c10::optional<at::Tensor>>& biases) {
  RECORD_FUNCTION("formers::gemv", std::vector<c10::IValue>());
  TORCH_CHECK(x.dim() >= 1, "gemv: x must have a feature dimension");
  TORCH_CHECK(weights.size() == biases.size() && !weights.empty(), "gemv: one bias slot per weight");
  const int64_t K = x.size(-1), M = K == 0 ? 0 : x.numel() / K;
  TORCH_CHECK(M >= 1 && M <= 8, "gemv: x must hold 1 to 8 rows, got ", M);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  const auto wdtype = weights[0].scalar_type();
  TORCH_CHECK(wdtype == at::kFloat || wdtype == at::kBFloat16, "gemv: weights must be float32 or bfloat16");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "gemv: x must be float32 or bfloat16");
  at::Tensor xf = x.to(at::kFloat).contiguous();  // no copy when x is float32 and contiguous
  std::vector<at::Tensor> outs, bias_f;
  std::vector<Job> jobs;
  int64_t chunks = 0, weight_bytes = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor& w = weights[i];
    TORCH_CHECK(w.dim() == 2 && w.size(1) == K && w.is_contiguous() && w.scalar_type() == wdtype,
                "gemv: weights must be contiguous [N, K] of one dtype");
    const int64_t N = w.size(0);
    out_shape.back() = N;
    outs.push_back(at::empty(out_shape, x.options()));
    const float* b = nullptr;
    if (biases[i].has_value() && biases[i]->defined()) {
      bias_f.push_back(biases[i]->to(at::kFloat).contiguous());
      b = bias_f.back().data_ptr<float>();
    }
    jobs.push_back({w.data_ptr(), b, outs.back().data_ptr(), N, chunks});
    chunks += (N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
    weight_bytes += w.numel() * w.element_size();
  }
  const float* xp = xf.data_ptr<float>();
  using formers_gemv::run;
  if (wdtype == at::kFloat) {
    if (x.scalar_type() == at::kFloat) run<float, float>(xp, M, K, jobs, chunks, weight_bytes);
    else run<float, BFloat16>(xp, M, K, jobs, chunks, weight_bytes);
  } else if (x.scalar_type() == at::kBFloat16) {  // x holds bfloat16 values: torch's own sums (bf16_match.h)
    std::vector<const float*> bs;
    std::vector<BFloat16*> ys;
    for (size_t i = 0; i < jobs.size(); ++i) bs.push_back(jobs[i].bias), ys.push_back(outs[i].data_ptr<BFloat16>());
    formers_bf16::linear<BFloat16>(xp, M, K, weights, bs, ys);
  } else {  // float32 x keeps every bit: the widening path
    run<BFloat16, float>(xp, M, K, jobs, chunks, weight_bytes);
  }
  return outs;
}

at::Tensor gemv(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  return gemv_group(x, {weight}, {bias})[0];
}

// x [..., K] float32/bfloat16 @ (weight int8 [N, K] * scale [N])^T (+ bias): QuantizedLinear's int8 scheme
at::Tensor gemv_int8(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scale,
                     const c10::optional<at::Tensor>& bias) {
  RECORD_FUNCTION("formers::gemv_int8", std::vector<c10::IValue>());
  const int64_t K = x.size(-1), M = K == 0 ? 0 : x.numel() / K, N = weight.size(0);
  TORCH_CHECK(M >= 1 && M <= 8, "gemv_int8: x must hold 1 to 8 rows, got ", M);
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2 && weight.size(1) == K && weight.is_contiguous(),
              "gemv_int8: weight must be contiguous int8 [N, K]");
  TORCH_CHECK(scale.numel() == N, "gemv_int8: one scale per output row");
  const auto out_dtype = x.scalar_type();
  TORCH_CHECK(out_dtype == at::kFloat || out_dtype == at::kBFloat16, "gemv_int8: x must be float32 or bfloat16");
  const at::Tensor xf = x.to(at::kFloat).contiguous(), sf = scale.to(at::kFloat).contiguous();
  at::Tensor bf;
  if (bias.has_value() && bias->defined()) bf = bias->to(at::kFloat).contiguous();
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  at::Tensor out = at::empty(shape, x.options());
  std::vector<Job> jobs{{weight.data_ptr(), bf.defined() ? bf.data_ptr<float>() : nullptr, out.data_ptr(), N, 0,
                         sf.data_ptr<float>()}};
  const int64_t chunks = (N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
  if (out_dtype == at::kFloat) formers_gemv::run<int8_t, float>(xf.data_ptr<float>(), M, K, jobs, chunks, N * K);
  else formers_gemv::run<int8_t, BFloat16>(xf.data_ptr<float>(), M, K, jobs, chunks, N * K);
  return out;
}

at::Tensor f32(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->to(at::kFloat).contiguous() : at::Tensor();
}

// The attention half's weights (and ln2, the norm before the feed-forward half) as one decode layer reads them,
// checked against hidden [B<=8, 1, C] and the caches [B, Hkv, capacity, D]
formers_decode::Layer attention_layer(const at::Tensor& hidden, const at::Tensor& ln1, double eps1, const at::Tensor& wq,
                                      const at::Tensor& wk, const at::Tensor& wv, const c10::optional<at::Tensor>& bq,
                                      const c10::optional<at::Tensor>& bk, const c10::optional<at::Tensor>& bv,
                                      const at::Tensor& wo, const c10::optional<at::Tensor>& bo, const at::Tensor& ln2,
                                      double eps2, const at::Tensor& cos, const at::Tensor& k_cache,
                                      const at::Tensor& v_cache, int64_t pos, int64_t heads, int64_t kv_heads, double scale) {
  const auto dtype = hidden.scalar_type();
  TORCH_CHECK(hidden.dim() == 3 && hidden.size(1) == 1 && hidden.size(0) <= 8, "decode_layer: hidden [B<=8, 1, C]");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "decode_layer: float32 or bfloat16 activations");
  for (const at::Tensor* w : {&wq, &wk, &wv, &wo})
    TORCH_CHECK((w->scalar_type() == dtype || w->scalar_type() == at::kByte) && w->is_contiguous(),
                "decode_layer: weights contiguous, activation dtype or GGUF blocks");
  TORCH_CHECK(k_cache.scalar_type() == dtype && v_cache.scalar_type() == dtype && k_cache.is_contiguous() &&
              v_cache.is_contiguous() && pos < k_cache.size(2), "decode_layer: cache buffers");
  formers_decode::Layer L;
  L.ln1 = formers_decode::floats_of(ln1);
  L.ln2 = formers_decode::floats_of(ln2);
  L.qkv = {wq, wk, wv};
  L.qkv_b = {f32(bq), f32(bk), f32(bv)};
  L.wo = wo;
  L.bo = f32(bo);
  L.eps1 = eps1;
  L.eps2 = eps2;
  L.H = heads;
  L.Hkv = kv_heads;
  L.D = formers_quant::rows_of(wq, hidden.size(-1)) / heads;
  L.scale = scale;
  TORCH_CHECK(cos.size(-1) == L.D, "decode_layer: rotary over the whole head");
  return L;
}

// hidden [B, 1, C]; weights as the modules hold them; caches [B, Hkv, capacity, D]; mask [B, 1, 1, >pos] or None
at::Tensor decode_layer(const at::Tensor& hidden, const at::Tensor& ln1, double eps1, const at::Tensor& wq,
                        const at::Tensor& wk, const at::Tensor& wv, const c10::optional<at::Tensor>& bq,
                        const c10::optional<at::Tensor>& bk, const c10::optional<at::Tensor>& bv,
                        const at::Tensor& wo, const c10::optional<at::Tensor>& bo, const at::Tensor& ln2, double eps2,
                        const at::Tensor& wg, const at::Tensor& wu, const at::Tensor& wd, const at::Tensor& cos,
                        const at::Tensor& sin, at::Tensor k_cache, at::Tensor v_cache, int64_t pos,
                        const c10::optional<at::Tensor>& mask, int64_t heads, int64_t kv_heads, double scale) {
  RECORD_FUNCTION("formers::decode_layer", std::vector<c10::IValue>());
  formers_decode::Layer L = attention_layer(hidden, ln1, eps1, wq, wk, wv, bq, bk, bv, wo, bo, ln2, eps2, cos, k_cache,
                                            v_cache, pos, heads, kv_heads, scale);
  for (const at::Tensor* w : {&wg, &wu, &wd})
    TORCH_CHECK((w->scalar_type() == hidden.scalar_type() || w->scalar_type() == at::kByte) && w->is_contiguous(),
                "decode_layer: weights contiguous, activation dtype or GGUF blocks");
  L.wg = wg;
  L.wu = wu;
  L.wd = wd;
  const at::Tensor m = mask.has_value() ? *mask : at::Tensor();
  if (hidden.scalar_type() == at::kFloat)
    return formers_decode::run_layer<float>(hidden, L, cos, sin, k_cache, v_cache, pos, m);
  return formers_decode::run_layer<BFloat16>(hidden, L, cos, sin, k_cache, v_cache, pos, m);
}

// Checked expert weights of one MoE block (moe.h): router [E, C]; per expert gate, up [I, C] and down [C, I];
// the shared expert's {gate, up, down} or none and its gate [1, C] or undefined; all float32, contiguous
formers_moe::Experts moe_weights(int64_t C, const at::Tensor& router, const std::vector<at::Tensor>& gate,
                                 const std::vector<at::Tensor>& up, const std::vector<at::Tensor>& down,
                                 const std::vector<at::Tensor>& shared, const at::Tensor& shared_gate, int64_t top_k) {
  const int64_t E = router.size(0);
  TORCH_CHECK(router.scalar_type() == at::kFloat && router.is_contiguous() && router.size(1) == C,
              "moe: router weight float32 [E, C]");
  TORCH_CHECK(gate.size() == static_cast<size_t>(E) && up.size() == gate.size() && down.size() == gate.size() &&
              (shared.empty() || shared.size() == 3) && top_k >= 1 && top_k <= E, "moe: one gate/up/down per expert");
  for (const auto* list : {&gate, &up, &down, &shared})
    for (const at::Tensor& w : *list)
      TORCH_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() && w.dim() == 2, "moe: float32 weights");
  TORCH_CHECK(!shared_gate.defined() || (shared_gate.scalar_type() == at::kFloat && shared_gate.is_contiguous() &&
                                         shared_gate.numel() == C && !shared.empty()), "moe: shared expert gate [1, C]");
  return {&router, &gate, &up, &down, &shared, &shared_gate};
}

at::Tensor defined_or_empty(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? *t : at::Tensor();
}

// MoE feed-forward for x [..., C] of 1 to 8 float32 rows -> (output [..., C], router logits [M, E])
std::vector<at::Tensor> moe_block(const at::Tensor& x, const at::Tensor& router, const std::vector<at::Tensor>& gate,
                                  const std::vector<at::Tensor>& up, const std::vector<at::Tensor>& down,
                                  const std::vector<at::Tensor>& shared, const c10::optional<at::Tensor>& shared_gate,
                                  int64_t top_k, bool softmax_after_topk, bool renorm, double p) {
  RECORD_FUNCTION("formers::moe_block", std::vector<c10::IValue>());
  const int64_t C = x.size(-1), M = C == 0 ? 0 : x.numel() / C;
  TORCH_CHECK(M >= 1 && M <= 8 && x.scalar_type() == at::kFloat, "moe_block: x must be 1 to 8 float32 rows");
  const at::Tensor sg = defined_or_empty(shared_gate), xf = x.contiguous();
  const formers_moe::Experts experts = moe_weights(C, router, gate, up, down, shared, sg, top_k);
  at::Tensor out = at::empty(x.sizes(), x.options()), logits = at::empty({M, router.size(0)}, x.options());
  formers_moe::moe_forward(xf.data_ptr<float>(), M, C, experts, {top_k, softmax_after_topk, renorm, p},
                           out.data_ptr<float>(), logits.data_ptr<float>());
  return {out, logits};
}

// A whole decoder layer with decode_layer's attention half and moe_block's feed-forward, float32
// -> (hidden [B, 1, C], router logits [B, E])
std::vector<at::Tensor> moe_layer(const at::Tensor& hidden, const at::Tensor& ln1, double eps1, const at::Tensor& wq,
                                  const at::Tensor& wk, const at::Tensor& wv, const c10::optional<at::Tensor>& bq,
                                  const c10::optional<at::Tensor>& bk, const c10::optional<at::Tensor>& bv,
                                  const at::Tensor& wo, const c10::optional<at::Tensor>& bo, const at::Tensor& ln2,
                                  double eps2, const at::Tensor& cos, const at::Tensor& sin, at::Tensor k_cache,
                                  at::Tensor v_cache, int64_t pos, const c10::optional<at::Tensor>& mask, int64_t heads,
                                  int64_t kv_heads, double scale, const at::Tensor& router,
                                  const std::vector<at::Tensor>& gate, const std::vector<at::Tensor>& up,
                                  const std::vector<at::Tensor>& down, const std::vector<at::Tensor>& shared,
                                  const c10::optional<at::Tensor>& shared_gate, int64_t top_k, bool softmax_after_topk,
                                  bool renorm, double p) {
  RECORD_FUNCTION("formers::moe_layer", std::vector<c10::IValue>());
  TORCH_CHECK(hidden.scalar_type() == at::kFloat, "moe_layer: float32 activations");
  const formers_decode::Layer L = attention_layer(hidden, ln1, eps1, wq, wk, wv, bq, bk, bv, wo, bo, ln2, eps2, cos,
                                                  k_cache, v_cache, pos, heads, kv_heads, scale);
  const at::Tensor sg = defined_or_empty(shared_gate);
  const formers_moe::Experts experts = moe_weights(hidden.size(-1), router, gate, up, down, shared, sg, top_k);
  at::Tensor logits = at::empty({hidden.size(0), router.size(0)}, hidden.options());
  at::Tensor out = formers_moe::moe_layer(hidden, L, cos, sin, k_cache, v_cache, pos, defined_or_empty(mask), experts,
                                          {top_k, softmax_after_topk, renorm, p}, logits.data_ptr<float>());
  return {out, logits};
}

// t as float32 on the calling thread. torch's own cast of a tensor this size (a decode step's logits, 49k
// values) opens an OpenMP region; its worker then spins for milliseconds against the decode pool's threads,
// and a bfloat16 SmolLM-135M step spent 0.9 ms in that cast and a quarter of its CPU time in the spinning.
at::Tensor to_float32(const at::Tensor& t) {
  const at::Tensor src = t.contiguous();
  at::Tensor out = at::empty(src.sizes(), src.options().dtype(at::kFloat));
  float* y = out.data_ptr<float>();
  const int64_t n = src.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, src.scalar_type(), "to_float32", [&] {
    const scalar_t* x = src.data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(x[i]);
  });
  return out;
}

// attention_bf16.h's attention of q [B, H, D] (bfloat16 values) over positions 0..pos of the bfloat16 caches
// [B, Hkv, cap, D], always ours (no check against torch): what the tests compare with torch
at::Tensor bf16_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                          const c10::optional<at::Tensor>& mask, int64_t pos, double scale) {
  TORCH_CHECK(formers_bf16::kTorchAttentionOrder, "bf16_attention: this build has no AVX512_BF16 kernels");
  TORCH_CHECK(k_cache.scalar_type() == at::kBFloat16 && v_cache.scalar_type() == at::kBFloat16 && k_cache.is_contiguous()
              && v_cache.is_contiguous() && k_cache.sizes() == v_cache.sizes() && k_cache.size(3) % 16 == 0,
              "bf16_attention: the caches must be contiguous bfloat16 [B, Hkv, capacity, D] with D a multiple of 16");
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2);
  const at::Tensor qf = q.to(at::kFloat).contiguous();
  const formers_bf16::MaskRows rows = formers_bf16::mask_rows(mask.has_value() ? *mask : at::Tensor(), B);
  at::Tensor out = at::empty({B, H, D}, qf.options());
  formers_bf16::attend_like_torch(qf.data_ptr<float>(), k_cache.data_ptr<at::BFloat16>(), v_cache.data_ptr<at::BFloat16>(),
                                  rows.data, rows.stride, B, H, k_cache.size(1), D, k_cache.size(2), pos,
                                  static_cast<float>(scale), out.data_ptr<float>());
  return out.to(at::kBFloat16);
}

// torch_steps.h's SiLU of bfloat16 x, always ours (no check against torch): what the tests compare with torch
at::Tensor bf16_silu(const at::Tensor& x) {
  TORCH_CHECK(formers_bf16::kTorchSteps, "bf16_silu: this build has no AVX-512 kernels");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16, "bf16_silu: bfloat16 input");
  at::Tensor y = x.to(at::kFloat).contiguous();
  formers_bf16::silu_like_torch(y.data_ptr<float>(), y.numel(), y.data_ptr<float>());
  return y.to(at::kBFloat16);
}

// torch_steps.h's x.pow(2).mean(-1) of float32 rows [M, C >= 8], always ours: what the tests compare with torch
at::Tensor bf16_mean_squares(const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 2 && x.size(1) >= 8, "bf16_mean_squares: float32 [M, C >= 8]");
  const at::Tensor c = x.contiguous();
  at::Tensor out = at::empty({c.size(0)}, c.options());
  formers_bf16::mean_squares_like_torch(c.data_ptr<float>(), c.size(0), c.size(1), out.data_ptr<float>());
  return out;
}

const char* isa() {
#if defined(__AVX512BF16__)
  return "avx512bf16";
#elif defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#else
  return "generic";
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gemv", &gemv, "y [..., N] = x [..., K] @ weight [N, K]^T (+ bias), at most 8 rows");
  m.def("bf16_torch_chunk", &formers_bf16::torch_chunk,
        "the K chunk with which bfloat16 products reproduce torch's for (rows, outputs, inputs, bias); 0: torch's own");
  m.def("bf16_attention_reproduces_torch",
        [](int64_t B, int64_t H, int64_t Hkv, int64_t D, const c10::optional<at::Tensor>& mask) {
          return formers_bf16::reproduces_torch(B, H, Hkv, D, mask.has_value() ? *mask : at::Tensor());
        },
        "whether the bfloat16 decode attention (attention_bf16.h) equals torch's here for this shape (mask: its dtype)");
  m.def("bf16_attention", &bf16_attention, "bfloat16 decode attention in torch's order (attention_bf16.h), unchecked");
  m.def("bf16_silu", &bf16_silu, "bfloat16 SiLU as torch computes it (torch_steps.h), unchecked");
  m.def("bf16_silu_reproduces_torch", &formers_bf16::reproduces_torch_silu,
        "whether torch_steps.h's SiLU equals at::silu here for n values (checked once on every bfloat16 value)");
  m.def("bf16_mean_squares", &bf16_mean_squares, "x.pow(2).mean(-1) as torch sums it (torch_steps.h), unchecked");
  m.def("bf16_mean_squares_reproduces_torch", &formers_bf16::reproduces_torch_mean_squares,
        "whether torch_steps.h's mean of squares equals torch's here for M rows of C values (checked once per C)");
  m.def("gemv_group", &gemv_group, "gemv of several weights sharing one input, in one parallel region");
  m.def("gemv_int8", &gemv_int8, "y = x @ (weight int8 * scale per row)^T (+ bias), at most 8 rows");
  m.def("decode_layer", &decode_layer, "one Llama-style decoder layer for one new token per row");
  m.def("quant_linear", &formers_quant::linear, "x @ W^T (+ bias) for W in GGUF Q8_0 (0) / Q4_0 (1) blocks");
  m.def("moe_block", &moe_block, "mixture-of-experts feed-forward for 1 to 8 rows (moe.h)");
  m.def("moe_layer", &moe_layer, "one mixture-of-experts decoder layer for one new token per row (moe.h)");
  m.def("quant_interleaved", [] { return formers_quant::kInterleavedKernel; },
        "whether GGUF blocks in 16-row groups have their own kernel in this build (else each group is unpacked)");
  m.def("quant_rows", &formers_quant::picked_rows, "rows of a Q8_0 (0) / Q4_0 (1) block weight, dequantized to float32");
  m.def("to_float32", &to_float32, "t as float32, computed on the calling thread (no OpenMP region)");
  m.def("isa", &isa, "the vector instruction set this build uses");
}
