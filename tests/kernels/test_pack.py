"""pack_for_decoding (formers/kernels/decode.py): at a model's first inference call on CPU its Linear weights move
into one 2 MiB-aligned huge-page block. The parameters must keep identity, values and ties, generation must equal
the unpacked model's bit for bit and transformers 4.45.2's within 1e-5, and a save after packing must reload."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
from formers.kernels import decode

# big enough (~6 MB of weights) that packing happens (below one huge page it is skipped)
SHAPE = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 1024}

pytestmark = pytest.mark.skipif(not decode._huge_pages_possible(), reason="transparent huge pages are off here")


def _linear_weights(model):
    return [m.weight for m in model.modules() if type(m) is formers.modeling.layers.Linear]


def _generate(model, ids):
    return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
                          output_scores=True, return_dict_in_generate=True, pad_token_id=0, eos_token_id=None)


@pytest.mark.parametrize("tied", [True, False])
def test_weights_move_into_one_block_and_generation_is_unchanged(tiny_checkpoint, tied):
    folder = tiny_checkpoint("llama", tie_word_embeddings=tied, **SHAPE)
    packed = formers.AutoModelForCausalLM.from_pretrained(folder)
    plain = formers.AutoModelForCausalLM.from_pretrained(folder)
    plain.__dict__[decode._PACKED] = True  # as if already packed: keeps the loaded storage
    oracle = transformers.AutoModelForCausalLM.from_pretrained(folder)
    params = {name: p for name, p in packed.named_parameters()}
    before = {name: p.detach().clone() for name, p in params.items()}
    ids = torch.randint(3, 1024, (2, 7), generator=torch.Generator().manual_seed(0))
    out = _generate(packed, ids)

    weights = _linear_weights(packed)
    starts = sorted(w.data_ptr() for w in {id(w): w for w in weights}.values())
    assert starts[0] % (2 << 20) == 0, "the block does not start on a huge-page boundary"
    assert all(w.untyped_storage().data_ptr() == weights[0].untyped_storage().data_ptr() for w in weights)
    assert {name: p for name, p in packed.named_parameters()} == params  # same Parameter objects
    for name, p in packed.named_parameters():
        assert torch.equal(p, before[name]), name
    assert (packed.lm_head.weight is packed.model.embed_tokens.weight) == tied

    reference, expected = _generate(plain, ids), _generate(oracle, ids)
    assert torch.equal(out.sequences, reference.sequences) and torch.equal(out.sequences, expected.sequences)
    for a, b, c in zip(out.scores, reference.scores, expected.scores):
        assert torch.equal(a, b) and (a - c).abs().max().item() <= 1e-5


def test_save_after_packing_reloads(tiny_checkpoint, tmp_path):
    model = formers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint("llama", **SHAPE))
    with torch.no_grad():
        model(torch.tensor([[5, 6, 7]]))
    assert model.__dict__.get(decode._PACKED)
    model.save_pretrained(tmp_path)
    again = formers.AutoModelForCausalLM.from_pretrained(tmp_path)
    theirs = dict(again.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, theirs[name]), name


def test_no_packing_with_autograd_or_in_training(tiny_checkpoint):
    model = formers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint("llama", **SHAPE))
    pointers = [w.data_ptr() for w in _linear_weights(model)]
    model(torch.tensor([[5, 6, 7]]))  # autograd on
    model.train()
    with torch.no_grad():
        model(torch.tensor([[5, 6, 7]]))
    assert [w.data_ptr() for w in _linear_weights(model)] == pointers and not model.__dict__.get(decode._PACKED)
