"""Qwen2-Audio vs transformers 4.45.2 on a tiny random checkpoint written by 4.45.2, with espeak-ng speech:
processor outputs, the audio merge (left/right padding, per-audio lengths, mask and positions), logits,
loss, greedy/beam/sampled generation, checkpoint keys both ways, and the 4.45 model_doc examples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

import formers
from formers.errors import ConfigError, GenerationError
from formers.models.qwen2_audio.merge import merge_audio_features

from .qwen2_audio_fixtures import write_tiny_qwen2_audio
from .whisper_fixtures import decode_16k, needs_audio_tools, speak_to_wav

pytestmark = needs_audio_tools
TOL = 1e-5
PROMPTS = ["<|audio_bos|><|AUDIO|><|audio_eos|>Generate the caption in English:",
           "<|audio_bos|><|AUDIO|><|audio_eos|>What is it?"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_tiny_qwen2_audio(tmp_path_factory.mktemp("qwen2_audio"))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, np.ndarray]:
    """Three clips of different lengths (about 1 s, 3 s and 2 s), decoded to 16 kHz by ffmpeg."""
    where = tmp_path_factory.mktemp("speech")
    texts = {"short": "Hello there.", "long": "The quick brown fox jumps over the lazy dog.",
             "mid": "Glass is breaking somewhere."}
    return {name: decode_16k(speak_to_wav(text, where / f"{name}.wav")) for name, text in texts.items()}


@pytest.fixture(scope="module")
def processors(folder):
    return transformers.AutoProcessor.from_pretrained(folder), formers.AutoProcessor.from_pretrained(folder)


@pytest.fixture(scope="module")
def models(folder):
    theirs = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(folder).eval()
    ours = formers.Qwen2AudioForConditionalGeneration.from_pretrained(folder).eval()
    return theirs, ours


def both_inputs(processors, text, audios, **kwargs):
    theirs, ours = processors
    return (theirs(text=text, audios=audios, return_tensors="pt", sampling_rate=16000, **kwargs),
            ours(text=text, audios=audios, return_tensors="pt", sampling_rate=16000, **kwargs))


def test_config_defaults_and_nested_layout_equal_oracle(folder):
    for name in ("Qwen2AudioConfig", "Qwen2AudioEncoderConfig"):
        ours, theirs = getattr(formers, name)().to_diff_dict(), getattr(transformers, name)().to_diff_dict()
        theirs.pop("transformers_version")
        ours.pop("tie_word_embeddings")
        assert ours == theirs
    loaded = formers.AutoConfig.from_pretrained(folder)
    assert isinstance(loaded.audio_config, formers.Qwen2AudioEncoderConfig)
    assert isinstance(loaded.text_config, formers.Qwen2Config) and loaded.text_config.hidden_size == 64
    oracle = transformers.AutoConfig.from_pretrained(folder).to_diff_dict()
    for key in ("audio_config", "text_config"):
        mine = loaded.to_diff_dict()[key]
        assert {k: v for k, v in mine.items() if k != "transformers_version"} == \
            {k: v for k, v in oracle[key].items() if k != "transformers_version"}, key


def test_processor_outputs_equal_oracle(processors, speech):
    cases = [(PROMPTS, [speech["short"], speech["long"]], {"padding": True}),
             (PROMPTS[0], speech["mid"], {}),
             (PROMPTS[0] + " and <|audio_bos|><|AUDIO|><|audio_eos|>", [speech["short"], speech["mid"]], {})]
    for text, audios, kwargs in cases:
        theirs, ours = both_inputs(processors, text, audios, **kwargs)
        assert sorted(theirs) == sorted(ours) == ["attention_mask", "feature_attention_mask", "input_features",
                                                  "input_ids"]
        for key in theirs:
            assert ours[key].dtype == theirs[key].dtype, key
            assert (ours[key].double() - theirs[key].double()).abs().max() <= TOL, key
    assert processors[1].model_input_names == processors[0].model_input_names


CONVERSATIONS = [
    [{"role": "user", "content": [{"type": "audio", "audio_url": "a.wav"}]},
     {"role": "assistant", "content": "Yes, the speaker is female and in her twenties."},
     {"role": "user", "content": [{"type": "audio", "audio_url": "b.wav"}]}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": [{"type": "audio", "audio_url": "a.wav"},
                                  {"type": "text", "text": "What can you do when you hear that?"}]},
     {"role": "assistant", "content": "Stay alert and cautious."},
     {"role": "user", "content": [{"type": "audio", "audio": "b.wav"}, {"type": "text", "text": "And this?"}]}],
    [{"role": "user", "content": "Who are you?"}],
]


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_chat_template_renders_as_oracle(processors, generation_prompt):
    theirs, ours = processors
    for conversation in CONVERSATIONS:
        expected = theirs.apply_chat_template(conversation, add_generation_prompt=generation_prompt, tokenize=False)
        assert ours.apply_chat_template(conversation, add_generation_prompt=generation_prompt,
                                        tokenize=False) == expected
    rendered = ours.apply_chat_template(CONVERSATIONS[0], add_generation_prompt=generation_prompt, tokenize=False)
    assert rendered.count("<|audio_bos|><|AUDIO|><|audio_eos|>") == 2 and "Audio 2:" in rendered


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_logits_on_padded_batch_equal_oracle(folder, processors, speech, attn):
    theirs = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(folder, attn_implementation=attn).eval()
    ours = formers.Qwen2AudioForConditionalGeneration.from_pretrained(folder, attn_implementation=attn).eval()
    a, b = both_inputs(processors, PROMPTS, [speech["short"], speech["long"]], padding=True)
    assert a["attention_mask"][1].min() == 0  # the second prompt is shorter: left-padded ids
    assert b["feature_attention_mask"].sum(-1).unique().numel() == 2  # two audio lengths
    with torch.no_grad():
        expected, got = theirs(**a, output_hidden_states=True), ours(**b, output_hidden_states=True)
    assert torch.equal(got.attention_mask, expected.attention_mask)
    assert got.logits.shape == expected.logits.shape and got.logits.shape[1] > a["input_ids"].shape[1]
    real = got.attention_mask.bool()
    assert (got.logits - expected.logits)[real].abs().max() <= TOL
    assert (got.hidden_states[-1] - expected.hidden_states[-1])[real].abs().max() <= TOL


def test_audio_tower_equals_oracle(models, processors, speech):
    theirs, ours = models
    a, _ = both_inputs(processors, PROMPTS, [speech["short"], speech["long"]], padding=True)
    lengths = a["feature_attention_mask"].sum(-1)
    assert torch.equal(ours.audio_tower._get_feat_extract_output_lengths(lengths)[1],
                       theirs.audio_tower._get_feat_extract_output_lengths(lengths)[1])
    with torch.no_grad():
        expected = theirs.audio_tower(a["input_features"], output_hidden_states=True)
        got = ours.audio_tower(a["input_features"], output_hidden_states=True)
    assert len(got.hidden_states) == len(expected.hidden_states)
    for x, y in zip(got.hidden_states, expected.hidden_states):
        assert (x - y).abs().max() <= TOL
    with pytest.raises(ConfigError, match="input_features"):
        ours.audio_tower(a["input_features"][..., :100])


@pytest.mark.parametrize("side", ["left", "right"])
def test_merge_mask_positions_and_loss_equal_oracle(models, processors, speech, side):
    """Padding side from the mask (left for generation, right for training); labels through the merge."""
    theirs, ours = models
    for processor in processors:
        processor.tokenizer.padding_side = side
    try:
        a, b = both_inputs(processors, PROMPTS, [speech["long"], speech["short"]], padding=True)
    finally:
        for processor in processors:
            processor.tokenizer.padding_side = "left"
    labels = a["input_ids"].masked_fill(a["attention_mask"] == 0, -100)
    theirs.config.ignore_index = -100  # 4.45's class reads this checkpoint key (the hub configs carry it)
    try:
        with torch.no_grad():
            expected = theirs(**a, labels=labels)
            got = ours(**b, labels=labels)
    finally:
        del theirs.config.ignore_index
    assert torch.equal(got.attention_mask, expected.attention_mask)
    edge = got.attention_mask[:, 0 if side == "left" else -1]
    assert bool((edge == 0).any())  # the merged rows really are padded on that side
    assert abs(got.loss.item() - expected.loss.item()) <= TOL
    real = got.attention_mask.bool()
    assert (got.logits - expected.logits)[real].abs().max() <= TOL


def test_merge_positions_and_errors():
    """The merge on hand-made tensors: slots, positions (pads read 1) and the refusals."""
    ids = torch.tensor([[5, 9, 6, 7], [0, 8, 9, 4]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    embeds = torch.arange(8, dtype=torch.float32).reshape(2, 4, 1) + 100
    audio = torch.arange(6, dtype=torch.float32).reshape(2, 3, 1)
    merged = merge_audio_features(audio, torch.tensor([3, 1]), embeds, ids, mask, audio_token_index=9)
    assert merged.inputs_embeds[..., 0].tolist() == [[100, 0, 1, 2, 102, 103], [0, 0, 0, 105, 3, 107]]
    assert merged.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]
    assert merged.position_ids.tolist() == [[0, 1, 2, 3, 4, 5], [1, 1, 1, 0, 1, 2]]
    with pytest.raises(GenerationError, match="audio tokens"):
        merge_audio_features(audio[:1], torch.tensor([3]), embeds, ids, mask, audio_token_index=9)
    with pytest.raises(GenerationError, match="both ends"):
        merge_audio_features(audio, torch.tensor([3, 1]), embeds, ids, torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]]),
                             audio_token_index=9)


GENERATE_CASES = [{"max_new_tokens": 16}, {"max_length": 40},  # (4.45 cannot beam-search this model)
                  {"max_new_tokens": 8, "num_return_sequences": 2, "do_sample": True, "top_k": 20},
                  {"max_new_tokens": 16, "do_sample": True, "temperature": 1.3, "top_p": 0.9},
                  {"max_new_tokens": 6, "return_dict_in_generate": True, "output_scores": True}]


@pytest.mark.parametrize("kwargs", GENERATE_CASES, ids=[str(c) for c in GENERATE_CASES])
def test_generate_equals_oracle(models, processors, speech, kwargs):
    theirs, ours = models
    a, b = both_inputs(processors, PROMPTS, [speech["mid"], speech["long"]], padding=True)
    torch.manual_seed(7)
    expected = theirs.generate(**a, **kwargs)
    torch.manual_seed(7)
    got = ours.generate(**b, **kwargs)
    if kwargs.get("return_dict_in_generate"):
        for x, y in zip(got.scores, expected.scores):
            assert (x - y).abs().max() <= TOL
        expected, got = expected.sequences, got.sequences
    assert got.shape == expected.shape and torch.equal(got, expected)
    prompt = a["input_ids"].repeat_interleave(got.shape[0] // 2, dim=0)
    assert torch.equal(got[:, :prompt.shape[1]], prompt)  # the output starts with the prompt ids


def test_audio_encoded_once_per_generate(models, processors, speech, monkeypatch):
    _, ours = models
    _, b = both_inputs(processors, PROMPTS, [speech["mid"], speech["long"]], padding=True)
    calls = []
    forward = ours.audio_tower.forward
    monkeypatch.setattr(ours.audio_tower, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    out = ours.generate(**b, max_new_tokens=5, min_new_tokens=5)
    assert out.shape[1] == b["input_ids"].shape[1] + 5 and len(calls) == 1


def test_processor_save_loads_in_oracle(processors, speech, tmp_path):
    theirs, ours = processors
    ours.save_pretrained(tmp_path)
    again = transformers.AutoProcessor.from_pretrained(tmp_path)
    assert type(again).__name__ == "Qwen2AudioProcessor" and again.chat_template == ours.chat_template
    expected = theirs(text=PROMPTS[0], audios=speech["short"], return_tensors="pt", sampling_rate=16000)
    got = again(text=PROMPTS[0], audios=speech["short"], return_tensors="pt", sampling_rate=16000)
    assert all(torch.equal(got[key], expected[key]) for key in expected)


def test_strategies_4_45_cannot_run_are_consistent(models, processors, speech):
    """4.45.2 raises on beam search for this model (its Qwen2 has no _reorder_cache for tuple caches) and on
    use_cache=False (a shape error: the merged mask meets the unmerged ids); formers runs both: one beam is
    greedy, no cache gives the cached result."""
    _, ours = models
    _, b = both_inputs(processors, PROMPTS, [speech["mid"], speech["long"]], padding=True)
    greedy = ours.generate(**b, max_new_tokens=8)
    assert torch.equal(ours.generate(**b, max_new_tokens=8, num_beams=1), greedy)
    assert torch.equal(ours.generate(**b, max_new_tokens=8, use_cache=False), greedy)
    beams = ours.generate(**b, max_new_tokens=8, num_beams=3, num_return_sequences=2)
    assert beams.shape == (4, greedy.shape[1])
    assert torch.equal(beams[:, :b["input_ids"].shape[1]], b["input_ids"].repeat_interleave(2, dim=0))


def test_bf16_greedy_equals_oracle(folder, processors, speech):
    a, b = both_inputs(processors, PROMPTS, [speech["mid"], speech["long"]], padding=True)
    theirs = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.bfloat16)
    ours = formers.Qwen2AudioForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours.generate(**b, max_new_tokens=12), theirs.eval().generate(**a, max_new_tokens=12))


def test_generate_without_audio_and_refusals(models, processors):
    theirs, ours = models
    ids = processors[1].tokenizer(["Hello there"], return_tensors="pt")
    assert torch.equal(ours.generate(**ids, max_new_tokens=8), theirs.generate(**ids, max_new_tokens=8))
    with pytest.raises(GenerationError, match="cache_implementation"):
        ours.generate(**ids, max_new_tokens=2, cache_implementation="static")
    with pytest.raises(ConfigError, match="padding_side"):
        ours.padding_side = "middle"


def test_checkpoint_keys_round_trip_both_ways(folder, models, processors, speech, tmp_path):
    theirs, ours = models
    ours.save_pretrained(tmp_path)
    with safe_open(folder / "model.safetensors", "pt") as a, safe_open(tmp_path / "model.safetensors", "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
    again = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(tmp_path).eval()
    a, _ = both_inputs(processors, PROMPTS, [speech["short"], speech["long"]], padding=True)
    with torch.no_grad():
        assert (again(**a).logits - theirs(**a).logits).abs().max() == 0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["audio_config"]["model_type"] == "qwen2_audio_encoder" and saved["text_config"]["model_type"] == "qwen2"
    auto = formers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    assert type(auto).__name__ == "Qwen2AudioForConditionalGeneration"
    encoder = formers.AutoModel.from_config(ours.config.audio_config)
    assert type(encoder).__name__ == "Qwen2AudioEncoder"
    encoder.save_pretrained(tmp_path / "encoder")
    oracle_encoder = transformers.Qwen2AudioEncoder.from_pretrained(tmp_path / "encoder").eval()
    features = a["input_features"][:1]
    with torch.no_grad():
        assert (oracle_encoder(features).last_hidden_state - encoder.eval()(features).last_hidden_state
                ).abs().max() <= TOL


# --- the 4.45 model_doc examples (qwen2_audio.md), with local espeak-ng speech for the URLs ---------------

def doc_inference(lib, folder, load_audio):
    model = lib.Qwen2AudioForConditionalGeneration.from_pretrained(folder)
    processor = lib.AutoProcessor.from_pretrained(folder)
    prompt = "<|audio_bos|><|AUDIO|><|audio_eos|>Generate the caption in English:"
    audio = load_audio("glass-breaking-151256.mp3", sr=processor.feature_extractor.sampling_rate)
    inputs = processor(text=prompt, audios=audio, return_tensors="pt")
    generated_ids = model.generate(**inputs, max_length=256)
    generated_ids = generated_ids[:, inputs.input_ids.size(1):]
    return processor.batch_decode(generated_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]


def _audios_of(conversations, processor, load_audio):
    audios = []
    for conversation in conversations:
        for message in conversation:
            if isinstance(message["content"], list):
                for ele in message["content"]:
                    if ele["type"] == "audio":
                        audios.append(load_audio(ele["audio_url"], sr=processor.feature_extractor.sampling_rate))
    return audios


VOICE_CHAT = [
    {"role": "user", "content": [{"type": "audio", "audio_url": "guess_age_gender.wav"}]},
    {"role": "assistant", "content": "Yes, the speaker is female and in her twenties."},
    {"role": "user", "content": [{"type": "audio", "audio_url": "translate_to_chinese.wav"}]},
]
AUDIO_ANALYSIS = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": [{"type": "audio", "audio_url": "glass-breaking-151256.mp3"},
                                 {"type": "text", "text": "What's that sound?"}]},
    {"role": "assistant", "content": "It is the sound of glass shattering."},
    {"role": "user", "content": [{"type": "text", "text": "What can you do when you hear that?"}]},
    {"role": "assistant", "content": "Stay alert and cautious, and check if anyone is hurt or if there is any damage "
                                     "to property."},
    {"role": "user", "content": [{"type": "audio", "audio_url": "1272-128104-0000.flac"},
                                 {"type": "text", "text": "What does the person say?"}]},
]


def doc_chat(lib, folder, load_audio, conversation):
    """The voice-chat and audio-analysis examples (same code, different conversations)."""
    processor = lib.AutoProcessor.from_pretrained(folder)
    model = lib.Qwen2AudioForConditionalGeneration.from_pretrained(folder, device_map="auto")
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    audios = _audios_of([conversation], processor, load_audio)
    inputs = processor(text=text, audios=audios, return_tensors="pt", padding=True)
    inputs.input_ids = inputs.input_ids.to(model.device)
    generate_ids = model.generate(**inputs, max_length=256)
    generate_ids = generate_ids[:, inputs.input_ids.size(1):]
    return processor.batch_decode(generate_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]


def doc_batch(lib, folder, load_audio):
    processor = lib.AutoProcessor.from_pretrained(folder)
    model = lib.Qwen2AudioForConditionalGeneration.from_pretrained(folder, device_map="auto")
    conversation1 = AUDIO_ANALYSIS[:4]
    conversation2 = [{"role": "user", "content": [{"type": "audio", "audio_url": "1272-128104-0000.flac"},
                                                  {"type": "text", "text": "What does the person say?"}]}]
    conversations = [conversation1, conversation2]
    text = [processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            for conversation in conversations]
    audios = _audios_of(conversations, processor, load_audio)
    inputs = processor(text=text, audios=audios, return_tensors="pt", padding=True)
    inputs["input_ids"] = inputs["input_ids"].to(model.device)
    inputs.input_ids = inputs.input_ids.to(model.device)
    generate_ids = model.generate(**inputs, max_length=256)
    generate_ids = generate_ids[:, inputs.input_ids.size(1):]
    return processor.batch_decode(generate_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


@pytest.mark.parametrize("example", ["inference", "voice_chat", "audio_analysis", "batch"])
def test_model_doc_examples_equal_oracle(folder, speech, example):
    clips = {"glass-breaking-151256.mp3": speech["mid"], "guess_age_gender.wav": speech["short"],
             "translate_to_chinese.wav": speech["long"], "1272-128104-0000.flac": speech["long"][:24000]}

    def load_audio(name, sr):
        assert sr == 16000
        return clips[name]

    def run(lib):
        if example == "inference":
            return doc_inference(lib, folder, load_audio)
        if example == "batch":
            return doc_batch(lib, folder, load_audio)
        return doc_chat(lib, folder, load_audio, VOICE_CHAT if example == "voice_chat" else AUDIO_ANALYSIS)

    expected, got = run(transformers), run(formers)
    assert got == expected and len("".join(got)) > 0
