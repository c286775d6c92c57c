"""One timed transcription by a reference tool, for benchmarks/hear.sh: prints one JSON line
{"tool", "load_s", "transcribe_s", "text"}.

    whisper_run.py mlx-whisper MLX_WHISPER_DIR AUDIO      (venv: .deps/venv-whisper)
    whisper_run.py faster-whisper CT2_DIR AUDIO THREADS   (venv: .deps/venv-fw)

Both decode greedily with their defaults otherwise (temperature fallback, previous text as
context), in f32 — as mlxk-hear does on a CPU. mlx-whisper reads the file with ffmpeg.
"""
import json
import sys
import time

tool, model_dir, audio = sys.argv[1:4]
t0 = time.perf_counter()
if tool == "mlx-whisper":
    import mlx.core as mx
    from mlx_whisper.load_models import load_model
    import importlib
    tr = importlib.import_module("mlx_whisper.transcribe")

    model = load_model(model_dir, dtype=mx.float32)
    tr.ModelHolder.model, tr.ModelHolder.model_path = model, model_dir
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    out = tr.transcribe(audio, path_or_hf_repo=model_dir, fp16=False, verbose=None)
    text = out["text"]
else:
    from faster_whisper import WhisperModel

    threads = int(sys.argv[4])
    model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=threads)
    load = time.perf_counter() - t0
    t1 = time.perf_counter()
    segments, info = model.transcribe(audio, beam_size=1, temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                                      condition_on_previous_text=True, vad_filter=False)
    text = "".join(s.text for s in segments)
print(json.dumps({"tool": tool, "load_s": load, "transcribe_s": time.perf_counter() - t1, "text": text.strip()}))
