"""Llama-family forward details against transformers 4.45.2 (the per-case checks of every family, including
the Llama rope variants, run in test_families.py over tests/models/cases/)."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(3, 128, (3, 16))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    mask[2, :9] = 0
    return ids, mask


def test_outputs_hidden_states_attentions_and_access(tiny_checkpoint):
    folder = tiny_checkpoint("llama")
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = _batch()
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, labels=ids)
        b = ref(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, labels=ids)
    assert len(a.hidden_states) == len(b.hidden_states) == 3
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert (x - y).abs().max().item() <= 1e-5
    for x, y in zip(a.attentions, b.attentions):
        assert (x - y).abs().max().item() <= 1e-6
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5
    assert a[0] is a.loss and a["logits"] is a.logits and a[1] is a.logits
    with torch.no_grad():
        as_tuple = ours(ids, attention_mask=mask, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.allclose(as_tuple[0], a.logits, atol=1e-5)


def test_inputs_embeds_and_num_logits_to_keep(tiny_checkpoint):
    folder = tiny_checkpoint("qwen2")
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = _batch()
    with torch.no_grad():
        embeds = ours.get_input_embeddings()(ids)
        a = ours(inputs_embeds=embeds, attention_mask=mask, num_logits_to_keep=1).logits
        b = ref(inputs_embeds=embeds, attention_mask=mask, num_logits_to_keep=1).logits
    assert a.shape == (3, 1, 128)
    assert (a - b).abs().max().item() <= 1e-5


def test_base_model_loads_from_causal_lm_checkpoint(tiny_checkpoint):
    folder = tiny_checkpoint("mistral", sliding_window=4)
    ours = formers.AutoModel.from_pretrained(folder)
    ref = transformers.AutoModel.from_pretrained(folder)
    ids, mask = _batch()
    with torch.no_grad():
        a = ours(ids, attention_mask=mask).last_hidden_state
        b = ref(ids, attention_mask=mask).last_hidden_state
    assert type(ours).__name__ == "MistralModel"
    assert (a - b).abs().max().item() <= 1e-5


def test_qwen2_sliding_window_layers_match_mistral_windowing(tiny_checkpoint, tmp_path):
    """4.45 applies Qwen2's window only in its flash path; formers applies it everywhere. With every layer
    windowed and zero q/k/v biases, Qwen2 must equal transformers' Mistral on the same weights."""
    import json
    from safetensors.torch import load_file, save_file

    folder = tiny_checkpoint("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0)
    state = {k: v for k, v in load_file(folder / "model.safetensors").items() if not k.endswith("_proj.bias")}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    mistral = tmp_path / "as-mistral"
    mistral.mkdir()
    save_file(state, mistral / "model.safetensors", metadata={"format": "pt"})
    (mistral / "config.json").write_text(json.dumps({**config, "model_type": "mistral",
                                                      "architectures": ["MistralForCausalLM"]}))
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    for layer in ours.model.layers:  # the checkpoint has no biases now: zero them as Mistral has none
        for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
            torch.nn.init.zeros_(proj.bias)
    ref = transformers.AutoModelForCausalLM.from_pretrained(mistral)
    ids, mask = _batch()
    with torch.no_grad():
        assert (ours(ids, attention_mask=mask).logits - ref(ids, attention_mask=mask).logits).abs().max() <= 1e-5
    assert [layer.self_attn.sliding_window for layer in ours.model.layers] == [4, 4]
    partly = formers.Qwen2Config(**{**config, "max_window_layers": 1})
    assert [partly.layer_sliding_window(i) for i in range(2)] == [None, 4]


def test_onednn_linear_path_matches(tiny_checkpoint, monkeypatch):
    """CPU fp32 inference sends large weights to oneDNN; with the size floor at 0 every Linear of the tiny
    model takes that path (a spy counts the calls), and the logits still equal transformers'."""
    import formers.modeling.layers as layers

    if not layers._USE_ONEDNN:
        pytest.skip("this torch build has no oneDNN linear")
    calls = []
    real = layers._onednn_linear
    monkeypatch.setattr(layers, "_onednn_linear", lambda *args: calls.append(1) or real(*args))
    folder = tiny_checkpoint("llama", attention_bias=True, mlp_bias=True)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = _batch()
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        ours(ids, attention_mask=mask)
        assert not calls  # tiny weights stay below the floor
        monkeypatch.setattr(layers, "ONEDNN_MIN_WEIGHT", 0)
        logits = ours(ids, attention_mask=mask).logits
    linears = sum(isinstance(module, torch.nn.Linear) for module in ours.modules())
    assert len(calls) == linears and (logits - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_equals_transformers_exactly(dtype):
    """float32 takes torch's fused rms_norm, bfloat16 the float32 round trip: both give 4.45.2's values bit
    for bit."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from formers.modeling.norms import RMSNorm

    torch.manual_seed(0)
    ours, ref = RMSNorm(576, eps=1e-5), LlamaRMSNorm(576, eps=1e-5)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(576))
        ref.weight.copy_(ours.weight)
        ours, ref = ours.to(dtype), ref.to(dtype)
        x = (torch.randn(3, 17, 576) * 4).to(dtype)
        assert torch.equal(ours(x), ref(x))
