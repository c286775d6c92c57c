"""mlx-whisper 0.4.3 with --initial-prompt, for mlxk-hear's parity test of it.

Re-run from the repository root (ffmpeg installed; /tmp/whisper-tiny.en-mlx is the converted
tiny.en that tests/reference/whisper_goldens.py writes; the fixtures from tests/fixtures/speech.sh):

    bash tests/fixtures/speech.sh /tmp/fx
    .deps/venv-whisper/bin/python tests/reference/whisper_prompt_goldens.py \
        /tmp/whisper-tiny.en-mlx /tmp/fx tests/reference/goldens/whisper_prompt.json
"""
import hashlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import whisper_goldens  # noqa: E402,F401  (the huggingface_hub stub)
import mlx.core as mx  # noqa: E402
import mlx_whisper  # noqa: E402

model_dir, fx, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
PROMPT = "Roundfire and Nog are the names of two dogs."
res = {"versions": {p: md.version(p) for p in ("mlx", "mlx-cpu", "mlx-whisper")},
       "initial_prompt": PROMPT, "fixtures": {}}
for name in ("short.wav", "long.wav"):
    p = fx / name
    mx.random.seed(0)
    r = mlx_whisper.transcribe(str(p), path_or_hf_repo=model_dir, fp16=False, verbose=None,
                               initial_prompt=PROMPT)
    res["fixtures"][name] = {
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        "text": r["text"],
        "segments": [{k: s[k] for k in ("id", "seek", "start", "end", "text", "tokens")}
                     for s in r["segments"]],
    }
Path(out).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
