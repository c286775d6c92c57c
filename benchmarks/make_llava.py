"""Writes a LLaVA-1.5-shaped model for benchmarks (never for tests): the real SmolLM2-135M-Instruct
text model (4-bit or f32, as tests/reference/convert_smollm2.py converts it) behind a random CLIP
tower and projector at LLaVA 1.5's real dimensions (ViT-L/14 at 336 px: 24 layers, hidden 1024,
576 image tokens) — so the image encode, a ~600-token prefill and the decode cost what they cost.

    .deps/venv-vlm/bin/python benchmarks/make_llava.py TEXT_DIR OUT_DIR

TEXT_DIR is .deps/ref/smollm2-q4 or -f32. The tokenizer is SmolLM2's, its unused special
`<empty_output>` (id 16) renamed `<image>`; the chat template is LLaVA 1.5's. Weights are
seeded (same folder every time), f32.
"""
import json
import shutil
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np

TEMPLATE = ("{% for message in messages %}{% if message['role'] != 'system' %}"
            "{{ message['role'].upper() + ': ' }}{% endif %}{% if message['content'] is string %}"
            "{{ message['content'] + ' ' }}{% else %}{% for content in message['content'] | "
            "selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
            "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
            "{{ content['text'] + ' ' }}{% endfor %}{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
IMAGE_TOKEN = 16
VISION = {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
          "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336,
          "patch_size": 14, "projection_dim": 768, "num_channels": 3, "layer_norm_eps": 1e-5}


def main(text_dir, out_dir):
    text_dir, out = Path(text_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tc = json.loads((text_dir / "config.json").read_text())
    quant = tc.pop("quantization", None)
    cfg = {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"],
           "image_token_index": IMAGE_TOKEN, "vision_feature_layer": -2,
           "vision_feature_select_strategy": "default", "projector_hidden_act": "gelu",
           "text_config": tc, "vision_config": dict(VISION),
           "eos_token_id": tc["eos_token_id"]}
    if quant is not None:
        # Per-layer entries name the module where mlx-vlm finds it.
        cfg["quantization"] = {k if not isinstance(v, dict) else f"language_model.{k}": v
                               for k, v in quant.items()}
        cfg["vision_config"]["skip_vision"] = True
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    weights = {f"language_model.{k}": v for k, v in mx.load(str(text_dir / "model.safetensors")).items()}
    rng = np.random.default_rng(0)
    d, f, p = VISION["hidden_size"], VISION["intermediate_size"], VISION["patch_size"]
    t = tc["hidden_size"]
    grid = VISION["image_size"] // p

    def mat(o, i):
        return mx.array(rng.uniform(-1, 1, (o, i)).astype(np.float32) * (1.7 / np.sqrt(i)))

    def vec(n, scale=0.02, offset=0.0):
        return mx.array((offset + rng.uniform(-1, 1, n) * scale).astype(np.float32))

    pre = "vision_tower.vision_model"
    weights[f"{pre}.embeddings.patch_embedding.weight"] = mat(d, 3 * p * p).reshape(d, 3, p, p)
    weights[f"{pre}.embeddings.class_embedding"] = vec(d)
    weights[f"{pre}.embeddings.position_embedding.weight"] = mat(grid * grid + 1, d) * 0.05
    for n in ("pre_layrnorm", "post_layernorm"):
        weights[f"{pre}.{n}.weight"] = vec(d, 0.1, 1.0)
        weights[f"{pre}.{n}.bias"] = vec(d)
    for i in range(VISION["num_hidden_layers"]):
        l = f"{pre}.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            weights[f"{l}.self_attn.{proj}.weight"] = mat(d, d)
            weights[f"{l}.self_attn.{proj}.bias"] = vec(d)
        for n in ("layer_norm1", "layer_norm2"):
            weights[f"{l}.{n}.weight"] = vec(d, 0.1, 1.0)
            weights[f"{l}.{n}.bias"] = vec(d)
        weights[f"{l}.mlp.fc1.weight"] = mat(f, d)
        weights[f"{l}.mlp.fc1.bias"] = vec(f)
        weights[f"{l}.mlp.fc2.weight"] = mat(d, f)
        weights[f"{l}.mlp.fc2.bias"] = vec(d)
    weights["multi_modal_projector.linear_1.weight"] = mat(t, d)
    weights["multi_modal_projector.linear_1.bias"] = vec(t)
    weights["multi_modal_projector.linear_2.weight"] = mat(t, t)
    weights["multi_modal_projector.linear_2.bias"] = vec(t)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    tok = json.loads((text_dir / "tokenizer.json").read_text())
    for a in tok["added_tokens"]:
        if a["id"] == IMAGE_TOKEN:
            old = a["content"]
            a["content"] = "<image>"
            tok["model"]["vocab"].pop(old, None)
            tok["model"]["vocab"]["<image>"] = IMAGE_TOKEN
    (out / "tokenizer.json").write_text(json.dumps(tok))
    tcfg = json.loads((text_dir / "tokenizer_config.json").read_text()) \
        if (text_dir / "tokenizer_config.json").exists() else {}
    tcfg.pop("chat_template", None)
    tcfg.pop("added_tokens_decoder", None)
    tcfg["processor_class"] = "LlavaProcessor"
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=1))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "processor_class": "LlavaProcessor",
        "do_resize": True, "size": {"shortest_edge": 336}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": 336, "width": 336},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": mean, "image_std": std, "do_convert_rgb": True}, indent=1))
    (out / "processor_config.json").write_text(json.dumps({
        "processor_class": "LlavaProcessor", "patch_size": 14,
        "vision_feature_select_strategy": "default", "image_token": "<image>",
        "num_additional_image_tokens": 1}, indent=1))
    print(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
