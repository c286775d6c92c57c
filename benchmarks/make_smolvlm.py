"""Writes a SmolVLM-256M-shaped model for benchmarks (never for tests): the real SmolLM2-135M
text model (f32, as tests/reference/convert_smollm2.py converts it; its vocabulary grown by
SmolVLM's 128 extra ids, their rows random, the head untied as SmolVLM's is) behind a random
SigLIP tower and connector at SmolVLM-256M's dimensions (512 px tiles of 16 px patches, hidden
768, 12 layers, pixel shuffle by 4 into 64 tokens a tile; pictures resized to a 2048 px longest
edge, so a photo is 12 tiles and the global view) — so tiling, encode, prefill and decode cost
what they cost.

    .deps/venv-vlm/bin/python benchmarks/make_smolvlm.py TEXT_DIR OUT_DIR [--q4]

TEXT_DIR is .deps/ref/smollm2-f32. --q4 quantizes the text model's matrices (embedding and head
included) to MLX 4-bit, group 64, as mlx-community's 4-bit SmolVLMs are; the tower stays f32.
Seeded: the same folder every time.
"""
import json
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np

TEMPLATE = ("<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
            "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
            "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
            "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
            "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
VISION = {"model_type": "smolvlm_vision", "hidden_size": 768, "intermediate_size": 3072,
          "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 512,
          "patch_size": 16, "num_channels": 3, "layer_norm_eps": 1e-6}
VOCAB = 49280


def main(text_dir, out_dir, q4):
    text_dir, out = Path(text_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tok = json.loads((text_dir / "tokenizer.json").read_text())
    base = len(tok["model"]["vocab"])
    specials = (["<global-img>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
                + ["<fake_token_around_image>", "<image>", "<end_of_utterance>"])
    ids = {}
    for i, name in enumerate(specials):
        ids[name] = base + i
        tok["added_tokens"].append({"id": base + i, "content": name, "single_word": False,
                                    "lstrip": False, "rstrip": False, "normalized": False,
                                    "special": True})
    (out / "tokenizer.json").write_text(json.dumps(tok))
    tc = json.loads((text_dir / "config.json").read_text())
    tc.pop("quantization", None)
    tc.update({"vocab_size": VOCAB, "tie_word_embeddings": False,
               "eos_token_id": ids["<end_of_utterance>"]})
    cfg = {"model_type": "smolvlm", "architectures": ["SmolVLMForConditionalGeneration"],
           "image_token_id": ids["<image>"], "scale_factor": 4, "text_config": tc,
           "vision_config": dict(VISION), "eos_token_id": ids["<end_of_utterance>"],
           "tie_word_embeddings": False}
    weights = {}
    for k, v in mx.load(str(text_dir / "model.safetensors")).items():
        weights[f"model.text_model.{k[len('model.'):]}" if k.startswith("model.") else k] = v
    emb = weights["model.text_model.embed_tokens.weight"]
    extra = mx.array(rng.uniform(-0.02, 0.02, (VOCAB - emb.shape[0], emb.shape[1])).astype(np.float32))
    emb = mx.concatenate([emb.astype(mx.float32), extra], axis=0)
    weights["model.text_model.embed_tokens.weight"] = emb
    weights["lm_head.weight"] = emb
    if q4:
        cfg["quantization"] = {"group_size": 64, "bits": 4}
        cfg["vision_config"]["skip_vision"] = True
        for k in list(weights):
            v = weights[k]
            if v.ndim == 2 and k.endswith(".weight") and (k.startswith("model.text_model.") or k == "lm_head.weight"):
                w, s, b = mx.quantize(v.astype(mx.float32), group_size=64, bits=4)
                p = k[: -len(".weight")]
                weights[k], weights[f"{p}.scales"], weights[f"{p}.biases"] = w, s, b
    d, f, p = VISION["hidden_size"], VISION["intermediate_size"], VISION["patch_size"]
    grid = VISION["image_size"] // p

    def mat(o, i):
        return mx.array(rng.uniform(-1, 1, (o, i)).astype(np.float32) * (1.7 / np.sqrt(i)))

    def vec(n, scale=0.02, offset=0.0):
        return mx.array((offset + rng.uniform(-1, 1, n) * scale).astype(np.float32))

    pre = "model.vision_model"
    weights[f"{pre}.embeddings.patch_embedding.weight"] = mat(d, 3 * p * p).reshape(d, 3, p, p)
    weights[f"{pre}.embeddings.patch_embedding.bias"] = vec(d)
    weights[f"{pre}.embeddings.position_embedding.weight"] = mat(grid * grid, d) * 0.05
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
    weights[f"{pre}.post_layernorm.weight"] = vec(d, 0.1, 1.0)
    weights[f"{pre}.post_layernorm.bias"] = vec(d)
    weights["model.connector.modality_projection.proj.weight"] = mat(tc["hidden_size"], d * 16)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>", "pad_token": "<|im_end|>",
        "add_bos_token": False, "tokenizer_class": "GPT2Tokenizer", "model_max_length": 8192,
        "processor_class": "SmolVLMProcessor"}, indent=1))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "SmolVLMImageProcessor", "processor_class": "SmolVLMProcessor",
        "do_convert_rgb": True, "do_resize": True, "size": {"longest_edge": 2048}, "resample": 1,
        "do_image_splitting": True, "max_image_size": {"longest_edge": 512}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "do_pad": True}, indent=1))
    (out / "processor_config.json").write_text(json.dumps({
        "processor_class": "SmolVLMProcessor", "image_seq_len": 64}, indent=1))
    print(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--q4" in sys.argv[3:])
