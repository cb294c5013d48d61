"""Token healing against transformers 4.45.2.

4.45.2's `heal_tokens` only runs when every prompt is empty: for any other prompt it calls
`ExtensionsTrie.values`, a method its trie does not have, and raises AttributeError. So:
- where 4.45.2 runs (empty prompts, a missing tokenizer) formers must give what it gives;
- everywhere else formers follows the algorithm 4.45.2 documents and implements up to that call, and the
  test derives the expected healed prompts by hand from the vocabulary and the oracle model's logits
  (a deliberate difference, listed in the README: formers heals where 4.45.2 crashes).
"""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
from formers.errors import GenerationError

from ..conftest import GPT2_TOKENIZER as GPT2
from ..conftest import STORIES, TINY

PROMPTS = ["The url is http", "I like bana", "http", "x = foo.b", "print(len", "The result:"]


@pytest.fixture(scope="module")
def gpt2_setup(tmp_path_factory):
    """(gpt2 tokenizer with its own pad token, formers model, oracle model): a tiny Llama over the gpt2
    vocabulary whose head is scaled up, so logits differ by more than the +1 that favours the tail token
    and healing really picks other extensions."""
    tokenizer = formers.AutoTokenizer.from_pretrained(GPT2)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})  # a pad distinct from eos, so masks follow the pads
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{**TINY, "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                                         "eos_token_id": tokenizer.eos_token_id})
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(5.0)
    folder = tmp_path_factory.mktemp("healing")
    model.save_pretrained(folder)
    return (tokenizer, formers.AutoModelForCausalLM.from_pretrained(folder),
            transformers.AutoModelForCausalLM.from_pretrained(folder))


def _healed_by_hand(oracle, tokenizer, prompts: list[str]) -> tuple[torch.Tensor, list[bool]]:
    """The healed prompts [B, L'] derived step by step, and per row whether another token replaced the tail.

    The stripped prompts are re-tokenized. A row's tail token is decoded to text and each space in it is
    replaced by the first character of the vocabulary token the tokenizer maps " " to. (4.45 means the
    byte-level "Ġ"; but " " is no gpt2 token, so it maps to the unknown token "<|endoftext|>" and the marker
    is "<": a tail that starts with a space finds no extension and is kept, in formers as in 4.45's code.)
    Every vocabulary token whose string starts with that text is an extension (found here by a plain scan).
    With none besides the tail itself the row stays. Otherwise the
    prompt without its tail (just BOS when the tail was its only token) is continued by one greedy token from
    the oracle's logits, biased +10 on every extension and +11 on the tail (healing stays conservative).
    """
    pad, bos = tokenizer.pad_token_id, tokenizer.bos_token_id
    rows = tokenizer([p.strip() for p in prompts], return_tensors="pt", padding=True).input_ids
    vocab = tokenizer.get_vocab()
    space = tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(" "))[0]
    healed, replaced = rows.clone(), []
    for row, ids in enumerate(rows):
        tail_id = int(ids[-1])
        tail_text = tokenizer.decode(tail_id).replace(" ", space)
        extensions = [token_id for token, token_id in vocab.items() if token.startswith(tail_text)]
        if len(extensions) <= 1:
            replaced.append(False)
            continue
        prefix = ids[ids != pad][:-1]
        if prefix.numel() == 0:
            prefix = torch.tensor([bos])
            healed[row, -2] = bos
        bias = torch.zeros(len(vocab))
        bias[extensions] = 10.0
        bias[tail_id] += 1.0
        with torch.no_grad():
            logits = oracle(prefix.unsqueeze(0)).logits[0, -1]
        healed[row, -1] = int((logits + bias[: logits.shape[0]]).argmax())
        replaced.append(int(healed[row, -1]) != tail_id)
    return healed, replaced


def test_heal_tokens_matches_the_hand_derivation(gpt2_setup):
    tokenizer, ours, oracle = gpt2_setup
    ids = tokenizer(PROMPTS, return_tensors="pt", padding=True).input_ids
    with pytest.raises(AttributeError, match="values"):  # 4.45.2 cannot heal a non-empty prompt
        oracle.heal_tokens(ids, tokenizer)
    expected, replaced = _healed_by_hand(oracle, tokenizer, PROMPTS)
    assert any(replaced) and not all(replaced)  # some tails healed to another token, some kept
    healed = ours.heal_tokens(ids, tokenizer)
    assert torch.equal(healed, expected), (tokenizer.batch_decode(healed), tokenizer.batch_decode(expected))
    for prompt, text in zip(PROMPTS, tokenizer.batch_decode(healed, skip_special_tokens=True)):
        head, tail = prompt.rsplit(" ", 1) if " " in prompt else ("", prompt)
        assert text.startswith(head) and text[len(head):].strip().startswith(tail), text


def test_generate_with_token_healing_continues_the_healed_prompts(gpt2_setup):
    """generate(token_healing=True) == 4.45.2's generate() from the hand-healed prompts (mask from the pads)."""
    tokenizer, ours, oracle = gpt2_setup
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    with pytest.raises(AttributeError, match="values"):
        oracle.generate(**batch, token_healing=True, tokenizer=tokenizer, **kwargs)
    out = ours.generate(**batch, token_healing=True, tokenizer=tokenizer, **kwargs)
    healed, _ = _healed_by_hand(oracle, tokenizer, PROMPTS)
    expected = oracle.generate(healed, attention_mask=(healed != tokenizer.pad_token_id).long(), **kwargs)
    assert torch.equal(out, expected)


def test_empty_prompts_and_missing_tokenizer_match_transformers(tmp_path):
    """The inputs 4.45.2 does run: prompts that are empty once stripped (only BOS, turned into pad) stay."""
    tokenizer = formers.AutoTokenizer.from_pretrained(STORIES)
    tokenizer.pad_token = "<unk>"
    reference_tokenizer = transformers.AutoTokenizer.from_pretrained(STORIES)
    reference_tokenizer.pad_token = "<unk>"
    ours = formers.AutoModelForCausalLM.from_pretrained(STORIES)
    oracle = transformers.AutoModelForCausalLM.from_pretrained(STORIES)
    ids = tokenizer(["", "  ", "\n"], return_tensors="pt", padding=True).input_ids
    assert torch.equal(ids, reference_tokenizer(["", "  ", "\n"], return_tensors="pt", padding=True).input_ids)
    expected = oracle.heal_tokens(ids, reference_tokenizer)
    assert torch.equal(ours.heal_tokens(ids, tokenizer), expected)
    with pytest.raises(ValueError, match="tokenizer") as refused:
        oracle.generate(ids, token_healing=True, max_new_tokens=2)
    with pytest.raises(GenerationError, match="tokenizer") as ours_refused:
        ours.generate(ids, token_healing=True, max_new_tokens=2)
    assert str(ours_refused.value).strip() == str(refused.value).strip()
