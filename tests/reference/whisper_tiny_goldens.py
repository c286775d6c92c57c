"""mlx-whisper reference outputs for the tiny random Whisper checkpoints (f32, MLX 4-bit, 8-bit),
for mlxk-hear's loader/quantization parity tests.

Re-run (from the repository root), after the Rust generator has written DIR (DIR/<name>/ with
config.json + weights.safetensors in mlx-whisper layout, and the manifest DIR/whisper_tiny.json
listing {"models": [{"name", "checksum", "layout"}]}):

    apt-get install -y espeak-ng sox libsox-fmt-mp3 ffmpeg     # fixtures; ffmpeg: mlx-whisper's decoder
    .deps/venv-whisper/bin/python tests/reference/whisper_tiny_goldens.py \
        /tmp/tinyw tests/reference/goldens/whisper_tiny.json

Arguments: DIR (the generator's output folder with whisper_tiny.json), OUT_JSON (the golden).
Same venv as tests/reference/whisper_goldens.py (mlx==0.32.2, mlx-cpu==0.32.2, mlx-whisper==0.4.3
with --no-deps, numba, tiktoken, scipy, numpy); the huggingface_hub stub and helpers come from
that script. Models whose layout is not "mlx" (e.g. whisper-hf, transformers layout, which
mlx-whisper cannot load) are listed under "skipped".

For every mlx-layout model it:
- loads it with `mlx_whisper.load_models.load_model(dir, dtype=mx.float32)`: a config.json with
  "quantization": {group_size, bits} goes through its `nn.quantize` path, which quantizes every
  nn.Linear and nn.Embedding whose `<path>.scales` is in the file (so the token embedding
  becomes a QuantizedEmbedding, and the tied output projection `token_embedding.as_linear` is a
  quantized matmul against the same packed table; convs and the positional embedding stay f32);
- takes the mel of short.wav (tests/fixtures/speech.sh; sha256 recorded) exactly as transcribe
  does for the first window: log_mel_spectrogram(audio, padding=N_SAMPLES), the content frames of
  the first 30 s, pad_or_trim to 3000 frames (zeros), f32;
- records (a) the first decoding step for the initial tokens [50257] (<|startoftranscript|>; the
  tiny.en vocabulary of 51864 is English-only): top-5 log-probs of the raw logits and after
  DecodingTask's logit filters (SuppressBlank, SuppressTokens, ApplyTimestampRules), as
  whisper_goldens.py does for the real model, plus a few encoder-output values;
  (b) `model.decode(mel_window, DecodingOptions(language="en", temperature=0.0, fp16=False))`:
  tokens, text, avg_logprob, no_speech_prob, compression_ratio; (c) the same with
  without_timestamps=True; each with "robustness" (the greedy path replayed step by step:
  smallest top-1/top-2 gap of the filtered log-probs, steps where every logit was masked).
  (d) "decode_t0_openai_timestamp_rules": (b) with openai-whisper's ApplyTimestampRules instead
  of mlx-whisper 0.4.3's, which has two deviations (see OpenAITimestampRules) that random models
  hit at once: timestamps may decrease, and after a timestamp pair every logit can be -inf, so
  argmax emits token 0 ("!") and avg_logprob becomes NaN (written as null, with
  "avg_logprob_is_nan": true). language="en" is what transcribe passes for an English-only model:
  with language=None, DecodingTask.run calls detect_language, which raises "This model doesn't
  have language tokens" (the tokenizer is the same either way, sot sequence [50257]).
Each model entry keeps the manifest's checksum (and the sha256 of its files), so a test can tell
a drifted generator (checksum differs: regenerate the golden) from a wrong implementation.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from whisper_goldens import SPEECH_SH, sha256, top5, versions  # noqa: E402  (also installs the hub stub)

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402
from mlx_whisper.audio import N_FRAMES, N_SAMPLES, load_audio, log_mel_spectrogram, pad_or_trim  # noqa: E402
from mlx_whisper.decoding import ApplyTimestampRules, DecodingOptions, DecodingTask  # noqa: E402
from mlx_whisper.load_models import load_model  # noqa: E402

INITIAL_TOKENS = [50257]


def first_window(path, n_mels):
    audio = load_audio(str(path))
    mel = log_mel_spectrogram(audio, n_mels=n_mels, padding=N_SAMPLES)
    content_frames = mel.shape[-2] - N_FRAMES
    segment = pad_or_trim(mel[0:min(N_FRAMES, content_frames)], N_FRAMES, axis=-2).astype(mx.float32)
    mx.eval(segment)
    return segment, int(content_frames)


def module_kinds(model):
    """Which module classes the loader produced for the quantizable layers."""
    kinds = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Embedding, nn.QuantizedLinear, nn.QuantizedEmbedding)):
            kinds[name] = type(m).__name__
    out = {}
    for name, kind in kinds.items():
        out.setdefault(kind, 0)
        out[kind] += 1
    return {"counts": out, "decoder.token_embedding": kinds.get("decoder.token_embedding")}


def first_step(model, segment):
    features = model.encoder(segment[None])
    task = DecodingTask(model, DecodingOptions(language="en", temperature=0.0, fp16=False))
    assert list(task.initial_tokens) == INITIAL_TOKENS, task.initial_tokens
    tokens = mx.array([INITIAL_TOKENS])
    logits = model.decoder(tokens, features)[0][:, -1].astype(mx.float32)
    filtered = logits
    for f in task.logit_filters:
        filtered = f.apply(filtered, tokens)
    return {
        "initial_tokens": INITIAL_TOKENS,
        "logit_filters": [type(f).__name__ for f in task.logit_filters],
        "encoder_output": {
            "shape": list(features.shape),
            "row0_first8": np.array(features[0, 0, :8]).tolist(),
            "row1499_first8": np.array(features[0, -1, :8]).tolist(),
            "mean": float(features.mean()), "mean_abs": float(mx.abs(features).mean()),
        },
        "logits_first8": np.array(logits[0, :8]).tolist(),
        "top5_raw": top5(logits[0]),
        "top5_filtered": top5(filtered[0]),
        "no_speech_token": int(task.tokenizer.no_speech),
        "no_speech_prob": float(mx.softmax(logits[0], axis=-1)[task.tokenizer.no_speech]),
    }


class OpenAITimestampRules(ApplyTimestampRules):
    """openai-whisper's ApplyTimestampRules (not mlx-whisper 0.4.3's), for the "openai" variant.

    mlx-whisper 0.4.3 differs in two places: (1) the "timestamps must not decrease" mask uses
    the *positions* of timestamp tokens (`enumerate(seq)`, `v > timestamp_begin`) as the slice
    end, so `mask[timestamp_begin:position]` is empty and the rule never applies; (2) the
    "sum of timestamp probability beats every text token -> only timestamps" test runs on the
    logits *before* this filter's own masks, so after a timestamp pair (timestamps masked) it
    can also mask all text: every logit is -inf, argmax picks token 0 ("!") and the
    log-prob of that step is NaN (so avg_logprob is NaN). openai-whisper masks in place first.
    """

    def apply(self, logits, tokens):
        tb, eot = self.tokenizer.timestamp_begin, self.tokenizer.eot
        x = np.array(logits, dtype=np.float32)
        toks = np.array(tokens)
        if self.tokenizer.no_timestamps is not None:
            x[:, self.tokenizer.no_timestamps] = -np.inf
        for k in range(toks.shape[0]):
            seq = toks[k, self.sample_begin:]
            last_ts = len(seq) >= 1 and seq[-1] >= tb
            penult_ts = len(seq) < 2 or seq[-2] >= tb
            if last_ts:
                if penult_ts:
                    x[k, tb:] = -np.inf
                else:
                    x[k, :eot] = -np.inf
            ts = seq[seq >= tb]
            if ts.size > 0:
                last = int(ts[-1]) if (last_ts and not penult_ts) else int(ts[-1]) + 1
                x[k, tb:last] = -np.inf
        if toks.shape[1] == self.sample_begin:
            x[:, :tb] = -np.inf
            if self.max_initial_timestamp_index is not None:
                x[:, tb + self.max_initial_timestamp_index + 1:] = -np.inf
        lp = np.array(log_softmax(mx.array(x)))
        for k in range(toks.shape[0]):
            if logsumexp_np(lp[k, tb:]) > lp[k, :tb].max():
                x[k, :tb] = -np.inf
        return mx.array(x)


def logsumexp_np(v):
    m = v.max()
    return m if not np.isfinite(m) else m + np.log(np.exp(v - m).sum())


def log_softmax(x):
    return x - mx.logsumexp(x, axis=-1, keepdims=True)


def make_task(model, openai_rules=False, **kw):
    task = DecodingTask(model, DecodingOptions(language="en", temperature=0.0, fp16=False, **kw))
    if openai_rules:
        task.logit_filters = [OpenAITimestampRules(f.tokenizer, f.sample_begin, f.max_initial_timestamp_index)
                              if isinstance(f, ApplyTimestampRules) else f for f in task.logit_filters]
    return task


def replay(model, features, task, tokens):
    """Re-run the greedy path step by step (no kv cache) to measure how robust it is: the
    smallest gap between the best and second-best filtered log-prob, and the steps where the
    filters left no finite logit (argmax then returns token 0)."""
    initial = list(task.initial_tokens)
    path = list(tokens) + ([task.tokenizer.eot] if len(tokens) < task.sample_len else [])
    gaps, all_masked, mismatches = [], [], []
    for j, chosen in enumerate(path):
        ctx = mx.array([initial + list(tokens[:j])])
        logits = model.decoder(ctx, features)[0][:, -1].astype(mx.float32)
        for f in task.logit_filters:
            logits = f.apply(logits, ctx)
        lp = np.array(log_softmax(logits[0]))
        if not np.isfinite(lp).any():
            all_masked.append(j)
            continue
        order = np.argsort(-lp)
        if int(order[0]) != chosen:
            mismatches.append(j)
        if np.isfinite(lp[order[1]]):
            gaps.append((float(lp[order[0]] - lp[order[1]]), j))
    g = min(gaps) if gaps else (None, None)
    return {"steps": len(path), "min_top1_top2_gap": g[0], "min_gap_step": g[1],
            "all_masked_steps": all_masked, "replay_argmax_mismatch_steps": mismatches}


def decode(model, segment, openai_rules=False, **kw):
    task = make_task(model, openai_rules, **kw)
    r = task.run(segment[None])[0]
    nan = not np.isfinite(r.avg_logprob)
    out = {"tokens": [int(t) for t in r.tokens], "n_tokens": len(r.tokens), "text": r.text,
           "avg_logprob": None if nan else float(r.avg_logprob), "avg_logprob_is_nan": nan,
           "no_speech_prob": float(r.no_speech_prob), "compression_ratio": float(r.compression_ratio)}
    out["robustness"] = replay(model, model.encoder(segment[None]), make_task(model, openai_rules, **kw), r.tokens)
    return out


def main(model_dir, out_json):
    model_dir = Path(model_dir)
    manifest_path = model_dir / "whisper_tiny.json"
    manifest = json.loads(manifest_path.read_text())
    models, skipped = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", str(SPEECH_SH), tmp], check=True)
        wav = Path(tmp) / "short.wav"
        fixture = {"name": "short.wav", "sha256": sha256(wav)}
        segment = None
        for entry in manifest["models"]:
            name, layout = entry["name"], entry.get("layout")
            if layout != "mlx":
                skipped.append({**entry, "reason": f"layout {layout!r}: mlx-whisper loads only its own layout"})
                continue
            d = model_dir / name
            config = json.loads((d / "config.json").read_text())
            model = load_model(str(d), dtype=mx.float32)
            if segment is None:
                segment, content_frames = first_window(wav, model.dims.n_mels)
                fixture.update({"content_frames": content_frames,
                                "window_shape": list(segment.shape),
                                "window_mean": float(segment.mean())})
            params = dict(tree_flatten(model.parameters()))
            models[name] = {
                "checksum": entry["checksum"],
                "layout": layout,
                "files_sha256": {f: sha256(d / f) for f in ("config.json", "weights.safetensors")},
                "dims": {k: v for k, v in config.items() if k not in ("quantization", "model_type")},
                "quantization": config.get("quantization"),
                "modules": module_kinds(model),
                "parameter_dtypes": sorted({str(p.dtype) for p in params.values()}),
                "first_step": first_step(model, segment),
                "decode_t0": decode(model, segment),
                "decode_t0_without_timestamps": decode(model, segment, without_timestamps=True),
                "decode_t0_openai_timestamp_rules": decode(model, segment, openai_rules=True),
            }
            m = models[name]
            print(f"{name}: top5_filtered {m['first_step']['top5_filtered'][:3]} "
                  f"decode {m['decode_t0']['tokens'][:8]}... ({m['decode_t0']['n_tokens']}), "
                  f"no-ts {m['decode_t0_without_timestamps']['tokens'][:8]}..., "
                  f"openai {m['decode_t0_openai_timestamp_rules']['tokens'][:8]}...")

    golden = {
        "versions": versions(),
        "generator_manifest": {"path": str(manifest_path), "sha256": sha256(manifest_path)},
        "speech_sh_sha256": sha256(SPEECH_SH),
        "fixture": fixture,
        "mel_source": ("log_mel_spectrogram(load_audio(short.wav), n_mels=80, padding=480000); "
                       "first window = pad_or_trim(mel[:min(3000, content_frames)], 3000) (zeros), f32"),
        "decoding_options": {"language": "en", "temperature": 0.0, "fp16": False, "sample_len": 224,
                             "suppress_tokens": "-1", "suppress_blank": True},
        "models": models,
        "skipped": skipped,
    }
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1] + "\nusage: whisper_tiny_goldens.py DIR OUT_JSON")
    main(*sys.argv[1:])
