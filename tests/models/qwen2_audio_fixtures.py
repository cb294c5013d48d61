"""A tiny random Qwen2-Audio checkpoint + processor written by transformers 4.45.2 (the oracle), and speech.

Tokenizer: byte-level BPE (Qwen2TokenizerFast) over the byte alphabet + merges learnt from CORPUS, with ChatML and the
audio placeholders as special tokens. Feature extractor: Whisper's, with 16 mel bins (30 s windows).
"""
from __future__ import annotations

import json
from pathlib import Path

# English the tests and the model_doc examples use, so their prompts stay short (BPE merges learnt from it)
CORPUS = ["You are a helpful assistant.", "Yes, the speaker is female and in her twenties.",
          "What's that sound? It is the sound of glass shattering.", "What can you do when you hear that?",
          "Stay alert and cautious, and check if anyone is hurt or if there is any damage to property.",
          "What does the person say?", "Generate the caption in English:", "What is it? Who are you? And this?",
          "system user assistant Audio 1: 2: 3:"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]
N_MELS = 16


def write_tokenizer(folder: Path):
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    bpe.model.save(str(folder))  # vocab.json + merges.txt
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = transformers.Qwen2TokenizerFast(vocab_file=str(folder / "vocab.json"),
                                                merges_file=str(folder / "merges.txt"),
                                                additional_special_tokens=SPECIALS, padding_side="left")
    return tokenizer


def write_tiny_qwen2_audio(folder: Path, seed: int = 0, init_std: float = 0.1) -> Path:
    """Model (2+2 layers, hidden 64, audio d_model 32), generation config and processor files."""
    import torch
    import transformers

    tokenizer = write_tokenizer(folder / "_tokenizer_src")
    ids = tokenizer.convert_tokens_to_ids
    audio = transformers.Qwen2AudioEncoderConfig(num_mel_bins=N_MELS, encoder_layers=2, encoder_attention_heads=4,
                                                 encoder_ffn_dim=64, d_model=32, init_std=init_std)
    text = transformers.Qwen2Config(vocab_size=len(tokenizer) + 4, hidden_size=64, intermediate_size=128,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    max_position_embeddings=4096, eos_token_id=ids("<|im_end|>"),
                                    bos_token_id=ids("<|endoftext|>"))
    config = transformers.Qwen2AudioConfig(audio_config=audio.to_dict(), text_config=text.to_dict(),
                                           audio_token_index=ids("<|AUDIO|>"), pad_token_id=ids("<|endoftext|>"))
    torch.manual_seed(seed)
    model = transformers.Qwen2AudioForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=ids("<|endoftext|>"), pad_token_id=ids("<|endoftext|>"),
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")], max_length=20)
    model.save_pretrained(folder)
    extractor = transformers.WhisperFeatureExtractor(feature_size=N_MELS)
    transformers.Qwen2AudioProcessor(extractor, tokenizer).save_pretrained(folder)
    return folder
