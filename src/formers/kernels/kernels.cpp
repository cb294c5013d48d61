// Python bindings of formers' CPU decode kernels: gemv / gemv_group (gemv.h) and decode_layer
// (decode_layer.h). Built by formers/kernels/build.py.
#include <torch/extension.h>
#include <ATen/record_function.h>

#include <array>

#include "bf16_match.h"
#include "decode_layer.h"
#include "gemv.h"
#include "moe.h"
#include "quant.h"
#include "rotary.h"

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
  const auto wdtype = weights[0].scalar_type();
  // bfloat16 in torch's per-output dot order (AVX2 builds) takes any number of rows: prefill too
  const bool any_rows = formers_gemv::kTorchDotOrderBf16 && wdtype == at::kBFloat16 && x.scalar_type() == at::kBFloat16;
  TORCH_CHECK(M >= 1 && (M <= 8 || any_rows), "gemv: x must hold 1 to 8 rows, got ", M);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
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

// gemv with its chunks on formers' pool, as the products of a fused decode step run (the pool's tests)
at::Tensor gemv_on_pool(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  const formers_gemv::FusedStep fused_step;
  return gemv(x, weight, bias);
}

at::Tensor f32(const at::Tensor& t) { return t.defined() ? t.to(at::kFloat).contiguous() : at::Tensor(); }

at::Tensor defined_or_empty(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? *t : at::Tensor();
}

// x [..., K] float32/bfloat16 @ (weight int8 [N, K] * scale [N])^T (+ bias): QuantizedLinear's int8 schemes (no
// scale: the plain products, which the dynamic scheme scales itself)
at::Tensor gemv_int8(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& scale,
                     const c10::optional<at::Tensor>& bias) {
  RECORD_FUNCTION("formers::gemv_int8", std::vector<c10::IValue>());
  const int64_t K = x.size(-1), M = K == 0 ? 0 : x.numel() / K, N = weight.size(0);
  TORCH_CHECK(M >= 1 && M <= 8, "gemv_int8: x must hold 1 to 8 rows, got ", M);
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2 && weight.size(1) == K && weight.is_contiguous(),
              "gemv_int8: weight must be contiguous int8 [N, K]");
  TORCH_CHECK(!scale.has_value() || scale->numel() == N, "gemv_int8: one scale per output row");
  const auto out_dtype = x.scalar_type();
  TORCH_CHECK(out_dtype == at::kFloat || out_dtype == at::kBFloat16, "gemv_int8: x must be float32 or bfloat16");
  const at::Tensor xf = x.to(at::kFloat).contiguous(), sf = scale.has_value() ? f32(*scale) : at::Tensor();
  const at::Tensor bf = f32(defined_or_empty(bias));
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  at::Tensor out = at::empty(shape, x.options());
  using formers_decode::fdata;
  std::vector<Job> jobs{{weight.data_ptr(), fdata(bf), out.data_ptr(), N, 0, fdata(sf)}};
  const int64_t chunks = (N + formers_gemv::kRowChunk - 1) / formers_gemv::kRowChunk;
  if (out_dtype == at::kFloat) formers_gemv::run<int8_t, float>(xf.data_ptr<float>(), M, K, jobs, chunks, N * K);
  else formers_gemv::run<int8_t, BFloat16>(xf.data_ptr<float>(), M, K, jobs, chunks, N * K);
  return out;
}

// torchao's int8_dynamic_activation_int8_weight for float32 x [..., K] of 1 to 8 rows (decode_layer.h
// dynamic_int8_into): QuantizedLinear's int8_dynamic scheme while decoding
at::Tensor gemv_int8_dynamic(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scale,
                             const c10::optional<at::Tensor>& bias) {
  RECORD_FUNCTION("formers::gemv_int8_dynamic", std::vector<c10::IValue>());
  const int64_t K = x.size(-1), M = K == 0 ? 0 : x.numel() / K, N = weight.size(0);
  TORCH_CHECK(M >= 1 && M <= 8 && x.scalar_type() == at::kFloat, "gemv_int8_dynamic: x must be 1 to 8 float32 rows");
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2 && weight.size(1) == K && weight.is_contiguous() &&
              scale.numel() == N, "gemv_int8_dynamic: weight must be contiguous int8 [N, K] with one scale per row");
  const at::Tensor xf = x.contiguous(), bf = f32(defined_or_empty(bias));
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  at::Tensor out = at::empty(shape, x.options());
  formers_decode::dynamic_int8_into(xf.data_ptr<float>(), M, K, {weight}, {formers_decode::fdata(bf)},
                                    {out.data_ptr<float>()}, {f32(scale)});
  return out;
}

// One decoder layer's weights and sizes as its modules hold them. The tensors are the parameters themselves, so an
// in-place change or a `.data` swap is seen at the next call; a plan kept across steps (kernels/decode.py) hands
// them over without converting fifteen arguments per layer per step.
struct LayerWeights {
  at::Tensor ln1, wq, wk, wv, bq, bk, bv, wo, bo, ln2, wg, wu, wd;  // bq .. bo, and wg .. wd, may be undefined
  double eps1, eps2, scale;
  int64_t heads, kv_heads;
  std::vector<at::Tensor> row_scales;  // of wq, wk, wv, wo, wg, wu, wd where that weight is int8, else undefined
  std::vector<bool> dynamic;           // per weight as above: int8 with int8-quantized activations (or empty)
};

bool dynamic_int8(const LayerWeights& W, size_t i) { return i < W.dynamic.size() && W.dynamic[i]; }

const at::Tensor& row_scale(const LayerWeights& W, size_t i) {
  static const at::Tensor none;
  return i < W.row_scales.size() ? W.row_scales[i] : none;
}

// A weight the kernels read: contiguous, and of the activation dtype, GGUF blocks, or int8 with one scale per row
bool weight_fits(const at::Tensor& w, const at::Tensor& row_scale, at::ScalarType dtype) {
  if (w.scalar_type() == at::kChar)
    return w.is_contiguous() && w.dim() == 2 && row_scale.defined() && row_scale.is_floating_point() &&
           row_scale.numel() == w.size(0);
  return (w.scalar_type() == dtype || w.scalar_type() == at::kByte) && w.is_contiguous();
}

// Why W's attention half cannot run on hidden [B, 1, C], the caches [B, Hkv, capacity, D] at `pos` and `mask`
// (nullptr: it can)
const char* attention_misfit(const at::Tensor& hidden, const LayerWeights& W, const at::Tensor& cos,
                             const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t pos, const at::Tensor& mask) {
  const auto dtype = hidden.scalar_type();
  if (hidden.dim() != 3 || hidden.size(1) != 1 || hidden.size(0) > 8) return "hidden [B<=8, 1, C]";
  if (dtype != at::kFloat && dtype != at::kBFloat16) return "float32 or bfloat16 activations";
  const std::array<const at::Tensor*, 4> attention{&W.wq, &W.wk, &W.wv, &W.wo};
  for (size_t i = 0; i < attention.size(); ++i)
    if (!weight_fits(*attention[i], row_scale(W, i), dtype))
      return "weights contiguous, activation dtype, GGUF blocks or int8 with row scales";
  if (k_cache.scalar_type() != dtype || v_cache.scalar_type() != dtype || !k_cache.is_contiguous() ||
      !v_cache.is_contiguous() || k_cache.dim() != 4 || k_cache.sizes() != v_cache.sizes() ||
      k_cache.size(0) != hidden.size(0) || pos < 0 || pos >= k_cache.size(2))
    return "cache buffers [B, Hkv, capacity > pos, D] of the activation dtype";
  if (mask.defined() && (mask.size(0) != hidden.size(0) || mask.size(-2) != 1 || mask.size(-1) <= pos))
    return "mask [B, 1, 1, > pos]";
  if (cos.size(-1) * W.heads != formers_quant::rows_of(W.wq, hidden.size(-1))) return "rotary over the whole head";
  if (dynamic_int8(W, 0) != dynamic_int8(W, 1) || dynamic_int8(W, 0) != dynamic_int8(W, 2))
    return "q, k and v of one int8 scheme";
  const std::array<const at::Tensor*, 7> all{&W.wq, &W.wk, &W.wv, &W.wo, &W.wg, &W.wu, &W.wd};
  for (size_t i = 0; i < all.size(); ++i)
    if (dynamic_int8(W, i) && (dtype != at::kFloat || all[i]->scalar_type() != at::kChar))
      return "int8-quantized activations only for int8 weights and float32 activations";
  return nullptr;
}

const char* layer_misfit(const at::Tensor& hidden, const LayerWeights& W, const at::Tensor& cos,
                         const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t pos, const at::Tensor& mask) {
  if (const char* why = attention_misfit(hidden, W, cos, k_cache, v_cache, pos, mask)) return why;
  const std::array<const at::Tensor*, 3> mlp{&W.wg, &W.wu, &W.wd};
  for (size_t i = 0; i < mlp.size(); ++i)
    if (!mlp[i]->defined() || !weight_fits(*mlp[i], row_scale(W, 4 + i), hidden.scalar_type()))
      return "weights contiguous, activation dtype, GGUF blocks or int8 with row scales";
  if (dynamic_int8(W, 4) != dynamic_int8(W, 5)) return "gate and up of one int8 scheme";
  return nullptr;
}

// What one decode layer reads of W for activations [B, 1, C] (the norm weights and biases as float32)
formers_decode::Layer layer_of(const LayerWeights& W, int64_t C) {
  formers_decode::Layer L;
  L.ln1 = formers_decode::floats_of(W.ln1);
  L.ln2 = formers_decode::floats_of(W.ln2);
  L.qkv = {W.wq, W.wk, W.wv};
  L.qkv_b = {f32(W.bq), f32(W.bk), f32(W.bv)};
  L.wo = W.wo;
  L.bo = f32(W.bo);
  L.wg = W.wg;
  L.wu = W.wu;
  L.wd = W.wd;
  L.qkv_s = {f32(row_scale(W, 0)), f32(row_scale(W, 1)), f32(row_scale(W, 2))};
  L.so = f32(row_scale(W, 3));
  L.sg = f32(row_scale(W, 4));
  L.su = f32(row_scale(W, 5));
  L.sd = f32(row_scale(W, 6));
  L.qkv_dynamic = dynamic_int8(W, 0);
  L.o_dynamic = dynamic_int8(W, 3);
  L.gate_up_dynamic = dynamic_int8(W, 4);
  L.down_dynamic = dynamic_int8(W, 6);
  L.eps1 = W.eps1;
  L.eps2 = W.eps2;
  L.H = W.heads;
  L.Hkv = W.kv_heads;
  L.D = formers_quant::rows_of(W.wq, C) / W.heads;
  L.scale = W.scale;
  return L;
}

LayerWeights layer_weights(const at::Tensor& ln1, double eps1, const at::Tensor& wq, const at::Tensor& wk,
                           const at::Tensor& wv, const c10::optional<at::Tensor>& bq, const c10::optional<at::Tensor>& bk,
                           const c10::optional<at::Tensor>& bv, const at::Tensor& wo, const c10::optional<at::Tensor>& bo,
                           const at::Tensor& ln2, double eps2, const c10::optional<at::Tensor>& wg,
                           const c10::optional<at::Tensor>& wu, const c10::optional<at::Tensor>& wd, int64_t heads,
                           int64_t kv_heads, double scale, const std::vector<c10::optional<at::Tensor>>& row_scales,
                           const std::vector<bool>& dynamic) {
  std::vector<at::Tensor> scales;
  for (const auto& s : row_scales) scales.push_back(defined_or_empty(s));
  return {ln1, wq, wk, wv, defined_or_empty(bq), defined_or_empty(bk), defined_or_empty(bv), wo, defined_or_empty(bo),
          ln2, defined_or_empty(wg), defined_or_empty(wu), defined_or_empty(wd), eps1, eps2, scale, heads, kv_heads,
          scales, dynamic};
}

// hidden [B, 1, C]; caches [B, Hkv, capacity, D]; mask [B, 1, 1, >pos] or None
at::Tensor decode_layer(const at::Tensor& hidden, const LayerWeights& W, const at::Tensor& cos, const at::Tensor& sin,
                        at::Tensor k_cache, at::Tensor v_cache, int64_t pos, const c10::optional<at::Tensor>& mask) {
  RECORD_FUNCTION("formers::decode_layer", std::vector<c10::IValue>());
  const formers_gemv::FusedStep fused_step;
  const at::Tensor m = defined_or_empty(mask);
  const char* why = layer_misfit(hidden, W, cos, k_cache, v_cache, pos, m);
  TORCH_CHECK(why == nullptr, "decode_layer: ", why);
  const formers_decode::Layer L = layer_of(W, hidden.size(-1));
  if (hidden.scalar_type() == at::kFloat)
    return formers_decode::run_layer<float>(hidden, L, cos, sin, k_cache, v_cache, pos, m);
  return formers_decode::run_layer<BFloat16>(hidden, L, cos, sin, k_cache, v_cache, pos, m);
}

// The layers of a decoder stack for decode_stack, each with the index of its cache slot
struct StackWeights {
  std::vector<LayerWeights> layers;
  std::vector<int64_t> cache_slots;
};

template <typename T>
at::Tensor run_stack(const at::Tensor& hidden, const std::vector<formers_decode::Layer>& layers,
                     const StackWeights& S, const at::Tensor& cos, const at::Tensor& sin, std::vector<at::Tensor>& keys,
                     std::vector<at::Tensor>& values, const std::vector<int64_t>& lengths,
                     const std::vector<at::Tensor>& masks, const at::Tensor& norm, double norm_eps) {
  constexpr bool BF = std::is_same_v<T, BFloat16>;
  const int64_t B = hidden.size(0), C = hidden.size(-1);
  std::vector<float> h = formers_decode::floats_of(hidden);
  const formers_decode::Rotary rot = formers_decode::rotary_of(cos, sin, layers[0].D);
  for (size_t i = 0; i < layers.size(); ++i) {
    const int64_t slot = S.cache_slots[i];
    formers_decode::layer_step<T>(h, B, layers[i], rot, keys[slot], values[slot], lengths[slot], masks[i]);
  }
  if (norm.defined()) {
    std::vector<float> normed(B * C);
    formers_decode::rms_norm<BF>(h.data(), formers_decode::floats_of(norm).data(), norm_eps, B, C, normed.data());
    h.swap(normed);
  }
  return formers_decode::tensor_of<T>(h, hidden);
}

// Every layer of S for one new token per row, then the final RMSNorm when `norm` is given (its weight, of the
// activation dtype): the caches' keys/values lists and lengths as DynamicCache holds them, one mask (or None) per
// layer. None when anything does not fit; nothing is computed or written then and the caller runs the modules.
c10::optional<at::Tensor> decode_stack(const at::Tensor& hidden, const StackWeights& S, const at::Tensor& cos,
                                       const at::Tensor& sin, std::vector<at::Tensor> keys, std::vector<at::Tensor> values,
                                       const std::vector<int64_t>& lengths,
                                       const std::vector<c10::optional<at::Tensor>>& masks,
                                       const c10::optional<at::Tensor>& norm, double norm_eps) {
  RECORD_FUNCTION("formers::decode_stack", std::vector<c10::IValue>());
  const formers_gemv::FusedStep fused_step;
  if (S.layers.empty() || masks.size() != S.layers.size() || S.cache_slots.size() != S.layers.size()) return c10::nullopt;
  const at::Tensor nw = defined_or_empty(norm);
  if (nw.defined() && (nw.scalar_type() != hidden.scalar_type() || nw.numel() != hidden.size(-1))) return c10::nullopt;
  std::vector<at::Tensor> mask_list;
  std::vector<formers_decode::Layer> layers;
  for (size_t i = 0; i < S.layers.size(); ++i) {
    const int64_t slot = S.cache_slots[i];
    if (slot < 0 || slot >= static_cast<int64_t>(keys.size()) || slot >= static_cast<int64_t>(values.size()) ||
        slot >= static_cast<int64_t>(lengths.size()))
      return c10::nullopt;
    mask_list.push_back(defined_or_empty(masks[i]));
    if (layer_misfit(hidden, S.layers[i], cos, keys[slot], values[slot], lengths[slot], mask_list.back()))
      return c10::nullopt;
    layers.push_back(layer_of(S.layers[i], hidden.size(-1)));
    if (layers.back().D != layers[0].D) return c10::nullopt;
  }
  if (hidden.scalar_type() == at::kFloat)
    return run_stack<float>(hidden, layers, S, cos, sin, keys, values, lengths, mask_list, nw, norm_eps);
  return run_stack<BFloat16>(hidden, layers, S, cos, sin, keys, values, lengths, mask_list, nw, norm_eps);
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
  const formers_gemv::FusedStep fused_step;
  TORCH_CHECK(hidden.scalar_type() == at::kFloat, "moe_layer: float32 activations");
  const LayerWeights W = layer_weights(ln1, eps1, wq, wk, wv, bq, bk, bv, wo, bo, ln2, eps2, {}, {}, {}, heads, kv_heads,
                                       scale, {}, {});
  const char* why = attention_misfit(hidden, W, cos, k_cache, v_cache, pos, defined_or_empty(mask));
  TORCH_CHECK(why == nullptr, "moe_layer: ", why);
  const formers_decode::Layer L = layer_of(W, hidden.size(-1));
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

// The index of the largest value in x[0 .. n): the first of equal ones, the first NaN where there is one (torch.argmax)
int64_t argmax_of(const float* x, int64_t n) {
  int64_t i = 0;
  float top = -std::numeric_limits<float>::infinity();
#if defined(__AVX512F__)
  __m512 tops = _mm512_set1_ps(top);
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)) break;  // a NaN: the scalar loop below finds the first one
    tops = _mm512_max_ps(tops, v);
  }
  top = _mm512_reduce_max_ps(tops);
#endif
  for (; i < n; ++i) {
    if (std::isnan(x[i])) return i;
    top = std::max(top, x[i]);
  }
  for (int64_t j = 0; j < n; ++j)  // the first index holding the maximum (-inf everywhere: index 0)
    if (x[j] == top) return j;
  return 0;
}

// argmax over the last dimension of float32 scores [N, V], on the calling thread: torch's reduction of a
// vocabulary-wide row opens an OpenMP region whose worker then spins against the decode pool, and each decode
// step ends with one
at::Tensor argmax_rows(const at::Tensor& scores) {
  TORCH_CHECK(scores.scalar_type() == at::kFloat && scores.dim() == 2 && scores.size(1) > 0,
              "argmax_rows: float32 scores [N, V > 0]");
  const at::Tensor c = scores.contiguous();
  const int64_t N = c.size(0), V = c.size(1);
  at::Tensor out = at::empty({N}, c.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  const float* x = c.data_ptr<float>();
  for (int64_t r = 0; r < N; ++r) o[r] = argmax_of(x + r * V, V);
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
  TORCH_CHECK(formers_bf16::kTorchSteps, "bf16_silu: this build has no ATen vector kernels");
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
  m.def("gemv_on_pool", &gemv_on_pool, "gemv on formers' pool, as inside a fused decode step");
  m.def("bf16_torch_chunk", &formers_bf16::torch_chunk,
        "the K chunk with which bfloat16 products reproduce torch's for (rows, outputs, inputs, bias); 0: torch's own, "
        "-1: torch's per-output dot order (AVX2)");
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
  m.def("gemv_int8_dynamic", &gemv_int8_dynamic,
        "torchao's int8 dynamic-activation product of at most 8 float32 rows with int8 weights and row scales");
  py::class_<LayerWeights>(m, "LayerWeights", "one decoder layer's weights and sizes, as decode_layer reads them");
  m.def("layer_weights", &layer_weights, "LayerWeights from the modules' tensors (wg, wu, wd None for an MoE layer)");
  py::class_<StackWeights>(m, "StackWeights", "a decoder stack's LayerWeights and their cache slots")
      .def(py::init<std::vector<LayerWeights>, std::vector<int64_t>>());
  m.def("decode_layer", &decode_layer, "one Llama-style decoder layer for one new token per row");
  m.def("decode_stack", &decode_stack, "every layer of a stack and the final norm for one new token per row, or None");
  m.def("quant_linear", &formers_quant::linear, "x @ W^T (+ bias) for W in GGUF Q8_0 (0) / Q4_0 (1) blocks");
  m.def("moe_block", &moe_block, "mixture-of-experts feed-forward for 1 to 8 rows (moe.h)");
  m.def("moe_layer", &moe_layer, "one mixture-of-experts decoder layer for one new token per row (moe.h)");
  m.def("quant_interleaved", [] { return formers_quant::kInterleavedKernel; },
        "whether GGUF blocks in 16-row groups have their own kernel in this build (else each group is unpacked)");
  m.def("quant_rows", &formers_quant::picked_rows, "rows of a Q8_0 (0) / Q4_0 (1) block weight, dequantized to float32");
  m.def("rotary_available", &formers_rotary::available,
        "whether rotary_tables gives torch's bits here (MKL's vsCos / vsSin present and equal to at::cos / at::sin)");
  m.def("rotary_tables", &formers_rotary::tables,
        "(cos, sin) [..., 2 * half] for integer positions [...] and inv_freq [half], as modeling/rope.py computes them");
  m.def("argmax_rows", &argmax_rows, "torch.argmax(scores, -1) of float32 [N, V], on the calling thread");
  m.def("to_float32", &to_float32, "t as float32, computed on the calling thread (no OpenMP region)");
  m.def("isa", &isa, "the vector instruction set this build uses");
  m.def("bf16_orders", [] { return std::make_pair(formers_gemv::kBf16Products, formers_gemv::kTorchDotOrderBf16); },
        "(whether bfloat16 products sum in torch's order here, whether that order holds at any row count)");
}
