"""One C++ call per decoder layer while decoding (kernels.cpp `decode_layer`), where the layer is plain Llama
(or Llama attention with a mixture-of-experts block: `moe_layer`, kernels/moe.py).

A decode step in eager PyTorch runs ~50 small operators per layer (norms, rope, cache writes, attention,
residuals) around the matrix products; on a 2-core CPU those cost as much as streaming the weights. For a
layer wired like Llama (sequential residual, RMSNorm, rotate-half rope over the whole head, no softcap,
window, q/k norm or clamp, a SiLU-gated MLP, plain Linears) and a DynamicCache, `decode_layer` does the
whole layer in one call for 1 to 8 rows of one new token each; anything else returns None and the layer
runs its own modules. The keys/values go straight into the DynamicCache's buffers (its own bookkeeping
is advanced here exactly as `update` would), so the cache is indistinguishable from the module path's.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules import module as _torch_module

from . import linear as kernel_linear
from . import moe as moe_kernel

_PLAIN_LAYER = "_formers_plain_llama_layer"  # per-layer memo of the structural check: (kind, registrations)
_REGISTRATIONS = [0]  # parameters, buffers and submodules assigned anywhere since import (torch's global hooks)


def _count_registration(*_) -> None:
    _REGISTRATIONS[0] += 1


def registrations() -> int:
    """How many parameters, buffers and submodules have been assigned to any module since import: a memo of
    anything derived from a model's structure is current while this number stays the same."""
    return _REGISTRATIONS[0]


# A module given a new parameter, buffer or submodule (a swapped Linear, an adapter) invalidates every memo below;
# counting costs one integer add per registration and lets a decode step check its memos in O(1) per layer.
for _register in (_torch_module.register_module_parameter_registration_hook,
                  _torch_module.register_module_buffer_registration_hook,
                  _torch_module.register_module_module_registration_hook):
    _register(_count_registration)


def _structure_ok(layer) -> bool:
    """A plain Llama layer: attention_ok, and a SiLU GatedMLP of plain Linears without biases."""
    from ..modeling.mlp import GatedMLP

    mlp = getattr(layer, "mlp", None)
    if not attention_ok(layer) or type(mlp) is not GatedMLP or mlp.fused or mlp.act_fn is not F.silu:
        return False
    linears = (mlp.gate_proj, mlp.up_proj, mlp.down_proj)
    return (all(kernel_linear.fusable(m) and m.bias is None and not m._forward_hooks and not m._forward_pre_hooks
                for m in linears) and not mlp._forward_hooks and not mlp._forward_pre_hooks)


def attention_ok(layer) -> bool:
    """A DecoderLayer with Llama's sequential wiring, RMSNorms and a plain attention (what the kernels'
    attention half computes), whatever its feed-forward block (kernels/moe.py reuses this)."""
    from ..modeling.attention import Attention
    from ..modeling.decoder import DecoderLayer
    from ..modeling.norms import RMSNorm

    attn = getattr(layer, "self_attn", None)
    if type(layer) is not DecoderLayer or layer.residual != "sequential" or layer.branch_scale != 1.0:
        return False
    if type(attn) is not Attention:
        return False
    spec = attn.spec
    if (spec.fused_qkv or spec.rotary != "half" or spec.rotary_in_float32 or spec.clip_qkv is not None
            or spec.qk_norm is not None or spec.softcap is not None or spec.sliding_window is not None
            or spec.eager_kernel is not None or spec.sdpa_kernel is not None or attn.implementation not in ("sdpa", "eager")):
        return False
    modules = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, layer.input_layernorm, layer.post_attention_layernorm)
    if any(m._forward_hooks or m._forward_pre_hooks for m in (layer, attn, *modules)):
        return False
    return (all(kernel_linear.fusable(m) for m in modules[:4]) and type(layer.input_layernorm) is RMSNorm
            and type(layer.post_attention_layernorm) is RMSNorm)


def decode_layer(layer, hidden: Tensor, cos: Tensor | None, sin: Tensor | None, mask: Tensor | None, cache,
                 output_attentions: bool) -> tuple[Tensor, None, Tensor | None] | None:
    """The layer's output for one new token per row through the fused kernel, or None where it does not apply."""
    if torch.compiler.is_compiling():  # first: a traced graph must not guard on the symbolic shapes below
        return None
    if (output_attentions or cos is None or hidden.dim() != 3 or hidden.shape[1] != 1
            or hidden.shape[0] > kernel_linear.MAX_ROWS or hidden.dtype not in kernel_linear.kernel_dtypes()
            or not hidden.is_cpu or torch.is_grad_enabled()):
        return None
    kind, seen = layer.__dict__.get(_PLAIN_LAYER, (None, -1))
    if seen != _REGISTRATIONS[0]:  # "llama", "moe" (a SparseMoeBlock feed-forward: kernels/moe.py) or False
        kind = "llama" if _structure_ok(layer) else "moe" if attention_ok(layer) and moe_kernel.block_ok(layer.mlp) \
            else False
        layer.__dict__[_PLAIN_LAYER] = kind, _REGISTRATIONS[0]  # hooks added later are seen by the check below
    if not kind or layer.training or (hidden.dtype == torch.bfloat16 and layer.self_attn.implementation != "sdpa"):
        return None  # (bfloat16 attends as torch's SDPA kernel rounds, which the eager path does not share)
    hooks = _hook_dicts(_kernel_modules(layer))  # only a plain layer has the modules the kernel stands in for
    if any(hooks):
        return None
    slot = _cache_slot(cache, layer.self_attn.layer_idx, hidden)
    kernels = kernel_linear._module()
    if slot is None or not kernels:
        return None
    keys, values, pos = slot
    attn, mlp = layer.self_attn, layer.mlp
    ln1, ln2 = layer.input_layernorm, layer.post_attention_layernorm
    linears = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj)
    if kind == "llama":
        linears += (mlp.gate_proj, mlp.up_proj, mlp.down_proj)
    weights = tuple(m.weight for m in linears)
    dynamic = [kernel_linear.dynamic_int8(m) for m in linears]  # int8-quantized activations: float32 ones only,
    if any(dynamic) and (hidden.dtype != torch.float32 or len(set(dynamic[:3])) > 1 or len(set(dynamic[4:6])) > 1):
        return None  # and one scheme across Q/K/V and across gate/up (they share one quantized input)
    if (not kernel_linear.fusable_weights((weights[:3], weights[3:4], weights[4:6], weights[6:]), hidden.dtype)
            or not all(w.is_contiguous() for w in weights) or cos.shape[-1] != attn.head_dim):
        return None
    if mask is not None and (mask.shape[0] != hidden.shape[0] or mask.shape[-2] != 1 or mask.shape[-1] <= pos):
        return None
    if kind == "moe":
        fused = moe_kernel.moe_layer(layer, hidden, cos, sin, keys, values, pos, mask)
        if fused is not None:
            _advance(cache, attn.layer_idx)
            return fused[0], None, fused[1]
        return None
    plan_weights = kernels.layer_weights(
        ln1.weight, ln1.variance_epsilon, weights[0], weights[1], weights[2], attn.q_proj.bias, attn.k_proj.bias,
        attn.v_proj.bias, weights[3], attn.o_proj.bias, ln2.weight, ln2.variance_epsilon, weights[4], weights[5],
        weights[6], attn.num_heads, attn.num_kv_heads, attn.spec.score_scale,
        [kernel_linear.row_scale(m) for m in linears], dynamic)
    out = kernels.decode_layer(hidden, plan_weights, cos, sin, keys, values, pos, mask)
    _advance(cache, attn.layer_idx)
    layer.__dict__[_PLAN] = _Plan(_REGISTRATIONS[0], hooks, attn.layer_idx, hidden.dtype, plan_weights,
                                  any(w.dtype == torch.uint8 for w in weights))
    _PLANS_MADE[0] += 1
    return out, None, None  # decode_stack replays this call from the plan


# --- the whole stack of layers -------------------------------------------------------------------------------
_PLAN = "_formers_decode_plan"  # per-layer memo: the kernel's weights from the layer's last fused call
_STACK = "_formers_decode_stack"  # per-ModuleList memo: every layer's plan, handed to the kernel as one object
_PLANS_MADE = [0]  # plans stored since import: a stack memo older than the newest plan is rebuilt


def _kernel_modules(layer) -> tuple:
    """The layer and every submodule whose forward the fused kernel stands in for."""
    attn, mlp = layer.self_attn, layer.mlp
    linears = (mlp.gate_proj, mlp.up_proj, mlp.down_proj) if hasattr(mlp, "gate_proj") else ()
    return (layer, attn, mlp, layer.input_layernorm, layer.post_attention_layernorm, attn.q_proj, attn.k_proj,
            attn.v_proj, attn.o_proj, *linears)


def _hook_dicts(modules) -> tuple:
    """The modules' forward and forward-pre hook dicts (torch adds hooks into these very dicts)."""
    return tuple(hooks for m in modules for hooks in (m._forward_hooks, m._forward_pre_hooks))


class _Plan(NamedTuple):
    registrations: int  # _REGISTRATIONS when the plan was made: any parameter, buffer or module assigned since voids it
    hooks: tuple  # the hook dicts of the layer's _kernel_modules (a forward hook added to any voids it too)
    layer_idx: int
    dtype: torch.dtype  # of the activations
    weights: object  # kernels.LayerWeights: the modules' tensors themselves (the kernel checks their dtype each call)
    blocks: bool  # some weights are GGUF blocks (uint8)


class _Stack(NamedTuple):
    made: tuple  # (_REGISTRATIONS, _PLANS_MADE) when built
    dtype: torch.dtype
    weights: object  # kernels.StackWeights
    hooks: tuple  # every layer's hook dicts
    blocks: bool
    slots: tuple  # each layer's cache slot


def _stack_of(layers, dtype: torch.dtype) -> _Stack | None:
    """The stack memo of `layers` when every layer has a plan for `dtype` made since the last registration, else
    None; rebuilt from the layers' plans when a plan is newer than it."""
    made = (registrations(), _PLANS_MADE[0])
    stack = layers.__dict__.get(_STACK)
    if stack is None or stack.made != made:
        plans = [layer.__dict__.get(_PLAN) for layer in layers]
        if any(plan is None or plan.registrations != made[0] or plan.dtype != dtype for plan in plans):
            return None
        slots = tuple(plan.layer_idx for plan in plans)
        weights = kernel_linear._module().StackWeights([plan.weights for plan in plans], list(slots))
        stack = _Stack(made, dtype, weights, tuple(h for plan in plans for h in plan.hooks),
                       any(plan.blocks for plan in plans), slots)
        layers.__dict__[_STACK] = stack
    if stack.dtype != dtype or any(stack.hooks) or any(layer.training for layer in layers):
        return None
    return stack


def decode_stack(layers, hidden: Tensor, cos: Tensor | None, sin: Tensor | None, masks: list, cache,
                 collect: bool, norm=None) -> Tensor | None:
    """Every layer's fused kernel in turn for one new token per row, in one call, from the weights each layer's last
    `decode_layer` call used (no module calls), then `norm` (the final norm); None where any layer has no such plan
    or anything else differs (the caller then calls each layer and the norm).
    `collect`: the caller wants per-layer outputs (hidden states, attentions, router logits)."""
    if collect or cos is None or torch.compiler.is_compiling() or torch.is_grad_enabled():
        return None
    if (hidden.dim() != 3 or hidden.shape[1] != 1 or hidden.shape[0] > kernel_linear.MAX_ROWS or not hidden.is_cpu
            or hidden.dtype not in kernel_linear.kernel_dtypes() or cos.shape != sin.shape
            or type(cache) is not _dynamic_cache() or len(cache._keys) < len(layers) or any(cache._shared)
            or len(masks) != len(layers) or _global_hooks()):
        return None
    stack = _stack_of(layers, hidden.dtype)
    if stack is None or (stack.blocks and kernel_linear.exact_gguf_activations()):
        return None  # (GGUF blocks asked to keep float32 activations: their module path)
    fused_norm = (type(norm) is _rms_norm() and not norm._forward_hooks and not norm._forward_pre_hooks
                  and norm.weight.dtype == hidden.dtype)
    out = kernel_linear._module().decode_stack(hidden, stack.weights, cos, sin, cache._keys, cache._values,
                                               cache._lengths, masks, norm.weight if fused_norm else None,
                                               norm.variance_epsilon if fused_norm else 0.0)
    if out is None:
        return None
    for idx in stack.slots:
        _advance(cache, idx)
    return out if fused_norm or norm is None else norm(out)


def _rms_norm() -> type:
    from ..modeling.norms import RMSNorm

    return RMSNorm


def _dynamic_cache() -> type:
    """DynamicCache, imported late (the cache package imports modeling code)."""
    from ..cache.dynamic import DynamicCache

    return DynamicCache


def _global_hooks() -> bool:
    """Whether torch's module-global hooks are set (calling layers' kernels directly would skip them)."""
    return bool(_torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks)


def _cache_slot(cache, layer_idx: int, hidden: Tensor) -> tuple[Tensor, Tensor, int] | None:
    """(key buffer, value buffer, position) of a DynamicCache layer with room for one more position, else None."""
    from ..cache.dynamic import DynamicCache

    if type(cache) is not DynamicCache or layer_idx >= len(cache._keys) or cache._shared[layer_idx]:
        return None
    keys, values, pos = cache._keys[layer_idx], cache._values[layer_idx], cache._lengths[layer_idx]
    if (pos >= keys.shape[2] or keys.shape[0] != hidden.shape[0] or keys.dtype != hidden.dtype
            or not keys.is_contiguous() or not values.is_contiguous()):
        return None
    return keys, values, pos


def _advance(cache, layer_idx: int) -> None:
    """The bookkeeping DynamicCache.update does for one new position."""
    cache._lengths[layer_idx] += 1
    if layer_idx == 0:
        cache._seen_tokens += 1


_PACKED = "_formers_weights_packed"  # per-model memo: pack_for_decoding ran
_HUGE_PAGE = 2 << 20


def pack_for_decoding(model: torch.nn.Module) -> None:
    """Once per model, at its first inference call on CPU: move the weights of its plain Linears and of its
    int8 and GGUF Q8_0 / Q4_0 QuantizedLinears (in module order, which is the order a decode step reads them; a tied LM
    head once) into one block of memory aligned to 2 MiB and advised to use transparent huge pages; the GGUF
    blocks are regrouped 16 rows at a time on the way (quantization/interleave.py), where this build has the
    kernel for that layout.

    A decode step streams every weight once, crossing a 4 KiB page every 4 KiB; with ordinary pages each
    crossing is a TLB miss, and the GEMV kernels read ~30% faster from huge pages on the EPYC machines. The
    parameters and buffers keep their identity and dtype (only `.data` changes), so ties, state_dict and saving
    are unaffected. Each weight is copied and its old storage released in turn (a memory-mapped checkpoint
    tensor unmaps then), largest first, so peak memory grows by about one layer weight at most. The float
    weights stay where they are where huge pages are off; the GGUF blocks are regrouped all the same.
    """
    if model.__dict__.get(_PACKED) or torch.compiler.is_compiling() or torch.is_grad_enabled() or model.training:
        return
    model.__dict__[_PACKED] = True
    weights, seen = [], set()  # (tensor, its content in the packed block: None = as it is)
    for module in model.modules():
        entry = _packable(module)
        if entry is not None and id(entry[0]) not in seen:
            seen.add(id(entry[0]))
            weights.append(entry)
    offsets, total = [], 0
    for w, _ in weights:
        offsets.append(total)
        total += -(-w.nbytes // 64) * 64  # each weight 64-byte aligned
    huge = total >= _HUGE_PAGE and _huge_pages_possible()
    block = _huge_page_block(total) if huge else None
    # largest first: while a weight is copied its old pages and its copy are both resident, and that is cheapest
    # early, before the other copies add up (peak RSS then grows by the largest layer weight, not the LM head)
    for (w, layout), offset in sorted(zip(weights, offsets), key=lambda pair: -pair[0][0].nbytes):
        if block is None and layout is None:
            continue
        content = w.data if layout is None else layout(w.data)
        if block is None:
            w.data = content.contiguous()
            continue
        view = block[offset:offset + w.nbytes].view(w.dtype).view(content.shape)
        view.copy_(content)
        w.data = view  # the old storage goes now (one weight at a time)


def _packable(module: torch.nn.Module) -> tuple[Tensor, object] | None:
    """(weight, regrouping function or None) of a module whose weight pack_for_decoding moves, else None."""
    from ..modeling.layers import Linear
    from ..quantization import linear as quantized  # late: quantization.linear imports this package

    w = getattr(module, "weight", None)
    if not isinstance(w, Tensor) or not w.is_cpu or not w.is_contiguous() or w.numel() == 0:
        return None
    if type(module) is Linear and isinstance(w, torch.nn.Parameter) and w.dtype in kernel_linear.kernel_dtypes():
        return w, None
    if type(module) is quantized.QuantizedLinear and module.scheme in quantized.GGUF_SCHEMES:
        return w, module.decoding_layout()
    if type(module) is quantized.QuantizedLinear and module.scheme in ("int8", "int8_dynamic"):
        return w, None
    return None


def _huge_pages_possible() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
            return "[never]" not in handle.read()
    except OSError:
        return False


def _huge_page_block(nbytes: int) -> Tensor:
    """uint8 [nbytes] of fresh anonymous memory starting on a 2 MiB boundary, advised MADV_HUGEPAGE."""
    import mmap

    region = mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=mmap.MAP_PRIVATE)  # private: shared memory is shmem, no THP
    flat = torch.frombuffer(region, dtype=torch.uint8)  # keeps `region` alive as long as any view
    start = -flat.data_ptr() % _HUGE_PAGE
    length = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE
    try:
        region.madvise(mmap.MADV_HUGEPAGE, start, min(length, len(region) - start))
    except (AttributeError, OSError, ValueError):  # no MADV_HUGEPAGE here: ordinary pages
        pass
    return flat[start:start + nbytes]
