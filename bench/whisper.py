"""Whisper tiny.en-shaped (random weights: d_model 384, 4 + 4 layers, 6 heads, 80 mels, vocab 51864), formers
beside transformers 4.45.2, each measurement in its own worker process, libraries alternating:

  decode:    short-form greedy generate over one 30 s window: median ms per decoder step (timed by a logits
             processor that notes when each step's logits arrive) -> tok/s, batch 1;
  long-form: real-time factor (seconds of compute per second of audio) of feature extraction + sequential
             long-form generate (return_timestamps=True, --long-tokens per window) over ~45 s of espeak-ng speech (noise when espeak-ng
             is missing).

Both libraries must produce the same ids (checked and reported). The last line is a JSON summary.

    python bench/whisper.py [--new-tokens 64] [--long-tokens 48] [--rounds 2] [--threads 0]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, collect, emit

TINY_EN = {"vocab_size": 51864, "num_mel_bins": 80, "d_model": 384, "encoder_layers": 4, "decoder_layers": 4,
           "encoder_attention_heads": 6, "decoder_attention_heads": 6, "encoder_ffn_dim": 1536,
           "decoder_ffn_dim": 1536, "max_source_positions": 1500, "max_target_positions": 448,
           "decoder_start_token_id": 50257, "bos_token_id": 50257, "eos_token_id": 50256, "pad_token_id": 50256}
AUDIO_SECONDS = 45
RATE = 16000


def checkpoint() -> Path:
    """Build (once) the random tiny.en-shaped checkpoint with the oracle: weights, English-only generation
    config (timestamps on <|notimestamps|> + 1 ...) and the feature extractor."""
    folder = OUT / "whisper-tiny-en-shaped"
    if (folder / "preprocessor_config.json").exists():
        return folder
    import torch
    import transformers
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY_EN))
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=50257, bos_token_id=50257, eos_token_id=50256, pad_token_id=50256, max_length=448,
        begin_suppress_tokens=[220, 50256], suppress_tokens=[1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58],
        no_timestamps_token_id=50362, is_multilingual=False, max_initial_timestamp_index=50,
        alignment_heads=[[2, 2], [3, 0], [3, 2], [3, 3], [3, 4], [3, 5]])
    model.save_pretrained(folder)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def audio() -> object:
    """~45 s of 16 kHz speech (espeak-ng, repeated) or, without espeak-ng/ffmpeg, seeded noise."""
    import numpy as np
    cached = OUT / "whisper-bench-audio.npy"
    if cached.exists():
        return np.load(cached)
    if shutil.which("espeak-ng") and shutil.which("ffmpeg"):
        text = ("The quick brown fox jumps over the lazy dog. Whisper turns speech into text, one thirty second "
                "window after another.")
        wav = subprocess.run(["espeak-ng", "--stdout", text],
                             check=True, capture_output=True).stdout
        raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-ac", "1", "-ar",
                              str(RATE), "-f", "f32le", "pipe:1"], input=wav, check=True, capture_output=True).stdout
        speech = np.frombuffer(raw, dtype=np.float32)
        samples = np.tile(speech, AUDIO_SECONDS * RATE // len(speech) + 1)[: AUDIO_SECONDS * RATE]
    else:
        samples = (np.random.default_rng(0).standard_normal(AUDIO_SECONDS * RATE) * 0.1).astype(np.float32)
    np.save(cached, samples)
    return samples


class StepClock:
    """Notes when each step's logits arrive; the gaps are the decoder steps (the first follows the prefill)."""

    def __init__(self):
        self.stamps: list[float] = []

    def __call__(self, input_ids, scores):
        self.stamps.append(time.perf_counter())
        return scores

    def median_ms(self) -> float:
        gaps = sorted(b - a for a, b in zip(self.stamps, self.stamps[1:]))
        return 1000 * gaps[len(gaps) // 2]


def worker(library: str, new_tokens: int, long_tokens: int) -> None:
    import torch
    lib = __import__(library)
    folder = checkpoint()
    model = lib.WhisperForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.float32).eval()
    extractor = lib.WhisperFeatureExtractor.from_pretrained(folder)
    samples = audio()
    short = torch.from_numpy(extractor(samples[: 30 * RATE], sampling_rate=RATE, return_tensors="np")["input_features"])
    record = {}
    with torch.inference_mode():
        model.generate(short, max_new_tokens=8)  # warm-up
        clock = StepClock()
        start = time.perf_counter()
        ids = model.generate(short, max_new_tokens=new_tokens, logits_processor=lib.LogitsProcessorList([clock]))
        record["short_s"] = time.perf_counter() - start
        record["decode_ms_per_token"] = clock.median_ms()
        record["decode_tokens"] = len(clock.stamps)
        record["short_ids"] = ids[0].tolist()
        start = time.perf_counter()
        features = extractor(samples, sampling_rate=RATE, truncation=False, padding="longest",
                             return_attention_mask=True, return_tensors="pt")
        long_ids = model.generate(features["input_features"], attention_mask=features["attention_mask"],
                                  return_timestamps=True, max_new_tokens=long_tokens)
        record["long_s"] = time.perf_counter() - start
        record["long_ids"] = long_ids[0].tolist()
    emit(record)


def run_worker(library: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", library, "--new-tokens", str(args.new_tokens),
               "--long-tokens", str(args.long_tokens),
               "--threads", str(args.threads)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    return collect(done.stdout + done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--long-tokens", type=int, default=48, help="max_new_tokens per long-form window")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.worker:
        worker(args.worker, args.new_tokens, args.long_tokens)
        return
    import torch
    checkpoint(), audio()
    print(f"whisper tiny.en-shaped (random), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.rounds} alternating rounds")
    runs: dict[str, list[dict]] = {"transformers": [], "formers": []}
    for _ in range(args.rounds):
        for library in ("transformers", "formers"):
            runs[library].append(run_worker(library, args))
    best = {lib: {"decode_tok_s": 1000 / min(r["decode_ms_per_token"] for r in rows),
                  "short_s": min(r["short_s"] for r in rows),
                  "long_rtf": min(r["long_s"] for r in rows) / AUDIO_SECONDS} for lib, rows in runs.items()}
    same = all(r["short_ids"] == runs["transformers"][0]["short_ids"] and
               r["long_ids"] == runs["transformers"][0]["long_ids"] for rows in runs.values() for r in rows)
    decode_ratio = best["formers"]["decode_tok_s"] / best["transformers"]["decode_tok_s"]
    rtf_ratio = best["transformers"]["long_rtf"] / best["formers"]["long_rtf"]
    for lib, row in best.items():
        print(f"{lib:>12}: decode {row['decode_tok_s']:.1f} tok/s, short-form {row['short_s']:.2f} s, "
              f"long-form RTF {row['long_rtf']:.4f} ({AUDIO_SECONDS} s audio)")
    print(f"formers/transformers: decode {decode_ratio:.2f}x, long-form {rtf_ratio:.2f}x faster; same ids: {same}")
    print(json.dumps({"decode_tok_s": {**{k: round(v["decode_tok_s"], 2) for k, v in best.items()},
                                       "ratio": round(decode_ratio, 3)},
                      "long_form_rtf": {**{k: round(v["long_rtf"], 5) for k, v in best.items()},
                                        "speedup": round(rtf_ratio, 3)},
                      "decode_tokens": runs["formers"][0]["decode_tokens"],
                      "long_form_tokens": len(runs["formers"][0]["long_ids"]), "same_ids": same}))


if __name__ == "__main__":
    main()
