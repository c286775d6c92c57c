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
(one image), goes through the model's processor to `input_ids` and `pixel_values` — LLaVA's
`processor(images=..., text=...)` (the image token expanded, the tokenizer's special tokens
added), SmolVLM's through `mlx_vlm.utils.prepare_inputs` (tiles, `<row_r_col_c>`/`<global-img>`
expansion, `pixel_attention_mask`), Qwen2-VL's too (patches, and `image_grid_thw`, which
`generate_step` passes on to the tower and to M-RoPE's positions); then `mlx_vlm.generate.generate_step` decodes greedily
(temperature 0) for `max_tokens`. transformers 5.17 without torch needs its Idefics3/SmolVLM
PIL processors pointed at (`patch_transformers_pil_processors`). Recorded:
the prompt ids, the tokens up to the first EOS, the first step's top-5 log-probs, and of the
pixel values (every tile; Qwen2-VL's patches put back together) the 8-bit pictures they encode (base64, channels last; exact) plus
sampled floats. A text-only case
(no image) runs the same prompt through the vision model. The golden keeps the generator's
checksums so a test can tell a drifted generator from a wrong model.
"""
import base64
import json
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np


def patch_transformers_pil_processors():
    """transformers 5.17 without torch marks the Idefics3/SmolVLM PIL image processors (and
    AutoImageProcessor) as needing torchvision; point those names at the real PIL classes, as
    a torch install with use_fast=False would pick. Importing image_processing_auto replaces
    sys.modules["transformers"], so the patch goes on the module object current after it."""
    import importlib
    auto = importlib.import_module("transformers.models.auto.image_processing_auto")
    reals = {}
    for pkg, mod, cls in [("smolvlm", "image_processing_pil_smolvlm", "SmolVLMImageProcessorPil"),
                          ("idefics3", "image_processing_pil_idefics3", "Idefics3ImageProcessorPil")]:
        reals[(pkg, cls)] = getattr(importlib.import_module(f"transformers.models.{pkg}.{mod}"), cls)
    import mlx_vlm  # noqa: F401  (imports more of transformers; patch after)
    t = sys.modules["transformers"]
    t.AutoImageProcessor = auto.AutoImageProcessor
    for (pkg, cls), real in reals.items():
        setattr(importlib.import_module(f"transformers.models.{pkg}"), cls, real)
        setattr(t, cls, real)


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


def qwen_picture(pv, thw, ip):
    """The 8-bit-step picture (1, 3, H, W) behind Qwen2-VL patches (patches, 3·T·P·P): the
    processor's patch transpose undone, the first of the duplicated frames."""
    t, gh, gw = (int(x) for x in thw)
    ms, ps, tps = ip.merge_size, ip.patch_size, ip.temporal_patch_size
    x = np.asarray(pv).reshape(1, t, gh // ms, gw // ms, ms, ms, 3, tps, ps, ps)
    x = x.transpose(0, 1, 7, 6, 2, 4, 8, 3, 5, 9).reshape(t, tps, 3, gh * ps, gw * ps)
    return x[0, 0][None]


def greedy(model, input_ids, pixel_values, mask, max_tokens, eos, **kwargs):
    from mlx_vlm.generate import generate_step
    tokens, top5 = [], None
    steps = generate_step(input_ids, model, pixel_values, mask, max_tokens=max_tokens,
                          temperature=0.0, **kwargs)
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
    patch_transformers_pil_processors()
    from mlx_vlm.prompt_utils import apply_chat_template
    from mlx_vlm.utils import load, load_image, prepare_inputs

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
            extra = {}
            flat = None
            if config["model_type"] == "llava":
                inputs = processor(images=[image], text=text, return_tensors="np")
                ids = mx.array(np.asarray(inputs["input_ids"]))
                tiles = np.asarray(inputs["pixel_values"])          # (1, 3, H, W)
            elif config["model_type"] in ("qwen2_vl", "qwen2_5_vl"):
                # mlx-vlm's input path: patches (patches, 3·T·P·P) and each picture's grid.
                inputs = prepare_inputs(processor, images=[image], prompts=text)
                ids = inputs["input_ids"]
                grid = np.asarray(inputs["image_grid_thw"])
                extra["image_grid_thw"] = inputs["image_grid_thw"]
                flat = np.asarray(inputs["pixel_values"]).reshape(-1)
                tiles = qwen_picture(inputs["pixel_values"], grid[0], ip)
            else:
                # Idefics3 / SmolVLM through mlx-vlm's own input path, as its generate does.
                inputs = prepare_inputs(processor, images=[image], prompts=text,
                                        image_token_index=model.config.image_token_index)
                ids = inputs["input_ids"]
                extra["pixel_attention_mask"] = inputs["pixel_attention_mask"]
                tiles = np.asarray(inputs["pixel_values"])[0]       # (tiles, 3, T, T)
            pixels = mx.array(np.asarray(inputs["pixel_values"]))
            tokens, top5 = greedy(model, ids, pixels, None, max_tokens, eos, **extra)
            if flat is None:
                flat = tiles.transpose(0, 2, 3, 1).reshape(-1)
            picks = list(range(0, flat.size, max(1, flat.size // 16)))[:16]
            crops = b"".join(crop_bytes(t, ip.image_mean, ip.image_std) for t in tiles)
            if "image_grid_thw" in extra:
                extra_fields = {"grid_thw": np.asarray(extra["image_grid_thw"]).reshape(-1).tolist()}
            else:
                extra_fields = {}
            cases.append({
                **extra_fields,
                "picture": pic["name"],
                "prompt_text": text,
                "prompt_ids": ids.reshape(-1).tolist(),
                "pixel_shape": list(tiles.shape),
                "crop_b64": base64.b64encode(crops).decode(),
                "pixel_samples": [[i, float(flat[i])] for i in picks],
                "tokens": tokens,
                "first_top5": top5,
            })
            print(m["name"], pic["name"], len(cases[-1]["prompt_ids"]), tokens)
        # Two pictures in one prompt: each expanded, their features (tiles) in order.
        pair = [manifest["pictures"][0], manifest["pictures"][1]]
        two = apply_chat_template(processor, model.config, prompt, num_images=2)
        images = [load_image(str(root / p["file"])) for p in pair]
        if config["model_type"] == "llava":
            inputs = processor(images=images, text=two, return_tensors="np")
            ids = mx.array(np.asarray(inputs["input_ids"]))
            tokens, top5 = greedy(model, ids, mx.array(np.asarray(inputs["pixel_values"])), None,
                                  max_tokens, eos)
        elif config["model_type"] in ("qwen2_vl", "qwen2_5_vl"):
            inputs = prepare_inputs(processor, images=images, prompts=two)
            ids = inputs["input_ids"]
            tokens, top5 = greedy(model, ids, inputs["pixel_values"], None, max_tokens, eos,
                                  image_grid_thw=inputs["image_grid_thw"])
        else:
            inputs = prepare_inputs(processor, images=images, prompts=two,
                                    image_token_index=model.config.image_token_index)
            ids = inputs["input_ids"]
            tokens, top5 = greedy(model, ids, inputs["pixel_values"], None, max_tokens, eos,
                                  pixel_attention_mask=inputs["pixel_attention_mask"])
        cases.append({"picture": "+".join(p["name"] for p in pair), "prompt_text": two,
                      "prompt_ids": ids.reshape(-1).tolist(), "tokens": tokens,
                      "first_top5": top5})
        print(m["name"], "two pictures", len(cases[-1]["prompt_ids"]), tokens)
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
