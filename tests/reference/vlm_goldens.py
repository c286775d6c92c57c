"""Greedy reference tokens and pixel values from mlx-vlm on the tiny random vision models.

The models and pictures come from mlxk's own deterministic generator
(lib/mlxk-infer/src/tiny_vision.rs):

    cargo run -p mlxk-infer --features test-support --example tiny_vlms -- /tmp/tiny-vlm
    python3 -m venv .deps/venv-vlm
    .deps/venv-vlm/bin/pip install mlx==0.32.2 mlx-cpu==0.32.2 mlx-vlm==0.7.6 'transformers<=5.17.0'
    .deps/venv-vlm/bin/python tests/reference/vlm_goldens.py /tmp/tiny-vlm \
        tests/reference/goldens/vlm.json

For every model in DIR/vlm.json, mlx-vlm 0.7.6 (mlx 0.32.2, the libmlx mlxk links) loads the
folder with `mlx_vlm.utils.load`; each picture is read with `mlx_vlm.utils.load_image` (EXIF
transpose, RGB) and, with the prompt rendered by `mlx_vlm.prompt_utils.apply_chat_template`
(one image), goes through the model's processor (`processor(images=..., text=...)`: the image
token expanded, the tokenizer's special tokens added) to `input_ids` and `pixel_values`; then
`mlx_vlm.generate.generate_step` decodes greedily (temperature 0) for `max_tokens`. Recorded:
the prompt ids, the tokens up to the first EOS, the first step's top-5 log-probs, and of the
pixel values the 8-bit picture they encode (base64; exact) plus sampled floats. A text-only case
(no image) runs the same prompt through the vision model. The golden keeps the generator's
checksums so a test can tell a drifted generator from a wrong model.
"""
import base64
import json
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np


def versions():
    import importlib.metadata as md
    return {p: md.version(p) for p in ("mlx", "mlx-cpu", "mlx-vlm", "transformers", "pillow")}


def crop_bytes(pixels, mean, std):
    """The 8-bit picture behind normalised CHW pixel values, as HWC bytes."""
    x = np.asarray(pixels, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)[:, None, None]
    s = np.asarray(std, dtype=np.float64)[:, None, None]
    v = np.rint((x * s + m) * 255.0)
    assert np.abs((x * s + m) * 255.0 - v).max() < 1e-3, "pixel values are not 8-bit steps"
    return np.clip(v, 0, 255).astype(np.uint8).transpose(1, 2, 0).tobytes()


def greedy(model, input_ids, pixel_values, mask, max_tokens, eos):
    from mlx_vlm.generate import generate_step
    tokens, top5 = [], None
    steps = generate_step(input_ids, model, pixel_values, mask, max_tokens=max_tokens,
                          temperature=0.0)
    for n, (tok, logprobs) in enumerate(steps):
        if n >= max_tokens:
            break
        if top5 is None:
            lp = logprobs.reshape(-1)
            order = mx.argsort(-lp)[:5].tolist()
            top5 = [[int(i), float(lp[i])] for i in order]
        tok = int(tok)
        if tok in eos:
            break
        tokens.append(tok)
    return tokens, top5


def main(models_dir, out_path):
    from mlx_vlm.prompt_utils import apply_chat_template
    from mlx_vlm.utils import load, load_image

    root = Path(models_dir)
    manifest = json.loads((root / "vlm.json").read_text())
    prompt = manifest["prompt"]
    max_tokens = manifest["max_tokens"]
    out = []
    for m in manifest["models"]:
        path = root / m["name"]
        model, processor = load(str(path))
        config = json.loads((path / "config.json").read_text())
        eos = config["eos_token_id"]
        eos = set(eos if isinstance(eos, list) else [eos])
        ip = processor.image_processor
        cases = []
        text = apply_chat_template(processor, model.config, prompt, num_images=1)
        for pic in manifest["pictures"]:
            image = load_image(str(root / pic["file"]))
            inputs = processor(images=[image], text=text, return_tensors="np")
            ids = mx.array(np.asarray(inputs["input_ids"]))
            pixels = mx.array(np.asarray(inputs["pixel_values"]))
            pv = np.asarray(inputs["pixel_values"])[0]
            tokens, top5 = greedy(model, ids, pixels, None, max_tokens, eos)
            flat = pv.transpose(1, 2, 0).reshape(-1)
            picks = list(range(0, flat.size, max(1, flat.size // 16)))[:16]
            cases.append({
                "picture": pic["name"],
                "prompt_text": text,
                "prompt_ids": ids.reshape(-1).tolist(),
                "pixel_shape": list(pv.shape),
                "crop_b64": base64.b64encode(crop_bytes(pv, ip.image_mean, ip.image_std)).decode(),
                "pixel_samples": [[i, float(flat[i])] for i in picks],
                "tokens": tokens,
                "first_top5": top5,
            })
            print(m["name"], pic["name"], len(cases[-1]["prompt_ids"]), tokens)
        plain = apply_chat_template(processor, model.config, prompt, num_images=0)
        ids = mx.array([processor.tokenizer.encode(plain, add_special_tokens=True)])
        tokens, top5 = greedy(model, ids, None, None, max_tokens, eos)
        cases.append({"picture": None, "prompt_text": plain, "prompt_ids": ids.reshape(-1).tolist(),
                      "tokens": tokens, "first_top5": top5})
        print(m["name"], "text only", tokens)
        out.append({"name": m["name"], "checksum": m["checksum"], "cases": cases})
    with open(out_path, "w") as f:
        json.dump({"versions": versions(), "prompt": prompt, "max_tokens": max_tokens,
                   "models": out}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
