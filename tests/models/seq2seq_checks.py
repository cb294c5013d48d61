"""Parity checks every encoder-decoder family runs against transformers 4.45.2 (the oracle)."""
from __future__ import annotations

from pathlib import Path

import torch

import formers


def build_seq2seq_checkpoint(folder: Path, model_type: str, seed: int = 0, **fields) -> Path:
    """A randomly initialised transformers seq2seq model saved in `folder` (norms/biases perturbed so
    their handling is tested)."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(model_type, **fields)
    model = transformers.AutoModelForSeq2SeqLM.from_config(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    return folder


def load_pair(folder: Path, attn_implementation: str = "eager"):
    import transformers

    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation="eager").eval()
    ours = formers.AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation=attn_implementation)
    return theirs, ours


def padded_batch(vocab: int, pad: int, seed: int = 0):
    """Encoder ids [3, 9] with rows left- and right-padded, and decoder ids [3, 6]."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    mask[2, 6:] = 0
    ids = ids.masked_fill(mask == 0, pad)
    decoder = torch.randint(4, vocab, (3, 6), generator=gen)
    return ids, mask, decoder


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def check_forward(theirs, ours, ids, mask, decoder) -> None:
    """Encoder states, decoder hidden states and attentions within 1e-5 (fp32); decoder logits within 1e-5 of
    their largest magnitude, at most 1e-4 (an untied head gives logits up to ~25, where 1e-5 is a few float32
    steps: with SDPA on an AVX2 machine, AMD EPYC Zen 3, the two libraries' logits land 1.2e-5 apart there)."""
    with torch.no_grad():
        a = theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder, output_hidden_states=True)
        b = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder, output_hidden_states=True)
    real = mask.bool()[..., None]
    enc_a, enc_b = a.encoder_last_hidden_state, b.encoder_last_hidden_state
    assert max_diff(enc_a * real, enc_b * real) <= 1e-5
    assert max_diff(a.logits, b.logits) <= min(1e-4, 1e-5 * max(1.0, a.logits.abs().max().item()))
    assert len(a.decoder_hidden_states) == len(b.decoder_hidden_states)
    for x, y in zip(a.decoder_hidden_states, b.decoder_hidden_states):
        assert max_diff(x, y) <= 1e-5


def check_incremental(theirs, ours, ids, mask, decoder) -> None:
    """Decoding the last position from a cache equals the full forward's last position."""
    with torch.no_grad():
        full = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder).logits
        first = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder[:, :-1], use_cache=True)
        step = ours(encoder_outputs=(first.encoder_last_hidden_state,), attention_mask=mask,
                    decoder_input_ids=decoder[:, -1:], past_key_values=first.past_key_values, use_cache=True)
        ref = theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder).logits
    assert isinstance(first.past_key_values, tuple) and len(first.past_key_values[0]) == 4  # legacy, as 4.45
    assert max_diff(step.logits[:, -1], full[:, -1]) <= 1e-5
    assert max_diff(step.logits[:, -1], ref[:, -1]) <= 1e-5


def check_generate(theirs, ours, ids, mask, **kwargs) -> None:
    """Same ids (and, with return_dict_in_generate, same scores) as 4.45.2; seeded sampling included."""
    torch.manual_seed(7)
    a = theirs.generate(ids, attention_mask=mask, **kwargs)
    torch.manual_seed(7)
    b = ours.generate(ids, attention_mask=mask, **kwargs)
    if not isinstance(a, torch.Tensor):
        assert type(a).__name__ == type(b).__name__
        if a.scores is not None:
            assert all(max_diff(x.masked_fill(x.isinf(), 0), y.masked_fill(y.isinf(), 0)) <= 1e-4
                       for x, y in zip(a.scores, b.scores))
        if getattr(a, "sequences_scores", None) is not None:
            assert max_diff(a.sequences_scores, b.sequences_scores) <= 1e-4
        a, b = a.sequences, b.sequences
    assert a.shape == b.shape, (a, b)
    assert torch.equal(a, b), (a, b)


def check_loss(theirs, ours, ids, mask, labels) -> None:
    with torch.no_grad():
        a = theirs(input_ids=ids, attention_mask=mask, labels=labels)
        b = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert abs(a.loss.item() - b.loss.item()) <= 1e-5
    assert max_diff(a.logits, b.logits) <= 1e-5


def check_save_round_trip(ours, folder: Path, ids, mask, decoder) -> None:
    """formers' save loads in 4.45.2 with every weight and gives the same logits."""
    import transformers

    ours.save_pretrained(folder)
    again, info = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        a = again.eval()(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder).logits
        b = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder).logits
    assert max_diff(a, b) <= 1e-5
