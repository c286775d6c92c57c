"""Beam-search reference texts from faster-whisper (CTranslate2) for mlxk-hear --beam-size.

mlx-whisper has no beam search, so the second opinion is faster-whisper 1.2.1 on the very same
CTranslate2 tiny.en weights: beam_size=5, patience 1, temperature fallback (0.0 … 1.0),
condition_on_previous_text, f32, no VAD. Re-run from the repository root:

    bash tests/fixtures/speech.sh /tmp/fx
    .deps/venv-fw/bin/python tests/reference/faster_whisper_beam.py \
        .deps/hf/hub/models--mlxk-demo--whisper-tiny.en-ct2/snapshots/*/ /tmp/fx \
        tests/reference/goldens/whisper_beam.json
"""
import hashlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

from faster_whisper import WhisperModel

model_dir, fx, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
m = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=2)
res = {"versions": {p: md.version(p) for p in ("faster-whisper", "ctranslate2")},
       "options": {"beam_size": 5, "patience": 1.0, "compute_type": "float32"}, "fixtures": {}}
for name in ("short.wav", "long.wav"):
    p = fx / name
    segs, _ = m.transcribe(str(p), beam_size=5, patience=1.0,
                           temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                           condition_on_previous_text=True, vad_filter=False)
    segs = list(segs)
    res["fixtures"][name] = {
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        "text": "".join(s.text for s in segs),
        "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in segs],
    }
Path(out).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
