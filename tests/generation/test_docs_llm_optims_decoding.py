"""transformers 4.45's docs/source/en/llm_optims.md beyond the static cache ("Speculative decoding",
"Prompt lookup decoding", "PyTorch scaled dot product attention"): each example run as written for
formers and for transformers 4.45.2 on the same checkpoints, with the same outputs. Substitutions:
stories260K for facebook/opt-1.3b and google/gemma-2b, a tiny random Llama on stories260K's tokenizer
for facebook/opt-125m, shorter prompts (the doc's are 24-25 stories260K tokens, past the default
max_length of 20). Not run here: the FlashAttention-2 and bitsandbytes examples (CUDA-only packages).
"""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from ..conftest import STORIES, build_oracle_checkpoint, requires_shared

pytestmark = requires_shared(STORIES)


@pytest.fixture(scope="module")
def assistant_dir(tmp_path_factory):
    folder = build_oracle_checkpoint(tmp_path_factory.mktemp("assistant"), "llama", vocab_size=512,
                                     max_position_embeddings=256)
    formers.AutoTokenizer.from_pretrained(STORIES).save_pretrained(folder)
    return folder


def _speculative(library, assistant_dir, **sampling):
    AutoModelForCausalLM, AutoTokenizer = library.AutoModelForCausalLM, library.AutoTokenizer
    device = "cuda" if torch.cuda.is_available() else "cpu"

    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    inputs = tokenizer("Relativity states", return_tensors="pt").to(device)

    model = AutoModelForCausalLM.from_pretrained(STORIES, torch_dtype="auto").to(device)
    assistant_model = AutoModelForCausalLM.from_pretrained(assistant_dir).to(device)
    torch.manual_seed(0)
    outputs = model.generate(**inputs, assistant_model=assistant_model, **sampling)
    return tokenizer.batch_decode(outputs, skip_special_tokens=True)


def _prompt_lookup(library, **sampling):
    AutoModelForCausalLM, AutoTokenizer = library.AutoModelForCausalLM, library.AutoTokenizer
    device = "cuda" if torch.cuda.is_available() else "cpu"

    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    inputs = tokenizer("The law states the law", return_tensors="pt").to(device)

    model = AutoModelForCausalLM.from_pretrained(STORIES, torch_dtype="auto").to(device)
    torch.manual_seed(0)
    outputs = model.generate(**inputs, prompt_lookup_num_tokens=3, **sampling)
    return tokenizer.batch_decode(outputs, skip_special_tokens=True)


@pytest.mark.parametrize("sampling", [{}, {"do_sample": True, "temperature": 0.7}], ids=["greedy", "sampling"])
def test_speculative_decoding_examples(assistant_dir, sampling):
    ours = _speculative(formers, assistant_dir, **sampling)
    assert ours == _speculative(transformers, assistant_dir, **sampling)
    assert ours[0].startswith("Relativity states")


@pytest.mark.parametrize("sampling", [{}, {"do_sample": True, "temperature": 0.7}], ids=["greedy", "sampling"])
def test_prompt_lookup_examples(sampling):
    ours = _prompt_lookup(formers, **sampling)
    assert ours == _prompt_lookup(transformers, **sampling)
    assert ours[0].startswith("The law states the law")


def _sdpa_example(library):
    import torch
    AutoModelForCausalLM = library.AutoModelForCausalLM
    inputs = library.AutoTokenizer.from_pretrained(STORIES)("Relativity states", return_tensors="pt")

    model = AutoModelForCausalLM.from_pretrained(
        STORIES,
        torch_dtype=torch.bfloat16,
    )

    with torch.backends.cuda.sdp_kernel(enable_flash=True, enable_math=False, enable_mem_efficient=False):
        outputs = model.generate(**inputs)
    return outputs


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's deprecation of torch.backends.cuda.sdp_kernel
def test_sdpa_kernel_example():
    ours = _sdpa_example(formers)
    assert torch.equal(ours, _sdpa_example(transformers)) and ours.shape[1] == 20
