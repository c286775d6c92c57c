"""Greedy reference tokens from mlx-lm on the tiny random models mlxk writes.

The models come from mlxk's own deterministic generator (lib/mlxk-infer/src/tiny.rs):

    cargo run -p mlxk-infer --features test-support --example tiny_models -- /tmp/tiny
    .deps/venv-ref/bin/python tests/reference/tiny_goldens.py /tmp/tiny \
        tests/reference/goldens/tiny.json

For every model in DIR/tiny.json and every case, mlx-lm (mlx 0.32.2, the libmlx mlxk links)
loads the folder with `mlx_lm.utils.load_model`, prefills the case's prompt ids in chunks of
`prefill_step` and decodes greedily (`generate_step`) up to the first EOS or `max_tokens`. bf16
folders are upcast to f32 after loading, as mlxk's CPU dtype policy does. The golden keeps the
generator's checksum so a test can tell a drifted generator from a wrong model.
"""
import json
import sys
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.utils import load_model


def versions():
    import importlib.metadata as md
    return {p: md.version(p) for p in ("mlx", "mlx-cpu", "mlx-lm")}


def run(model, eos, case):
    tokens, top5 = [], None
    steps = generate_step(mx.array(case["prompt_ids"]), model, max_tokens=case["max_tokens"],
                          prefill_step_size=case["prefill_step"])
    for tok, logprobs in steps:
        if top5 is None:
            order = mx.argsort(-logprobs)[:5].tolist()
            top5 = [[int(i), float(logprobs[i])] for i in order]
        tok = int(tok)
        if tok in eos:
            break
        tokens.append(tok)
    return tokens, top5


def main(models_dir, out_path):
    manifest = json.loads((Path(models_dir) / "tiny.json").read_text())
    out = []
    for m in manifest["models"]:
        path = Path(models_dir) / m["name"]
        model, config = load_model(path)
        if m["upcast_to_f32"]:
            model.set_dtype(mx.float32)
        eos = config["eos_token_id"]
        eos = set(eos if isinstance(eos, list) else [eos])
        cases = []
        for c in manifest["cases"]:
            tokens, top5 = run(model, eos, c)
            cases.append({**c, "tokens": tokens, "first_top5": top5})
            print(m["name"], c["prefill_step"], tokens)
        out.append({"name": m["name"], "checksum": m["checksum"], "cases": cases})
    with open(out_path, "w") as f:
        json.dump({"made_by": "tests/reference/tiny_goldens.py", "versions": versions(),
                   "models": out}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
