"""Writes a Qwen2-VL-2B-shaped model for benchmarks (never for tests): random weights at
Qwen2-VL-2B-Instruct's dimensions — a qwen2 text model of 28 layers, hidden 1536, 12 heads over 2
KV heads, MLP 8960, a 151936-token vocabulary, tied embeddings, M-RoPE sections 16 + 24 + 24;
its vision transformer of 32 layers, hidden 1280, 16 heads, 14 px patches over two frames,
merged 2 × 2 into the text model's width — so encode, prefill and decode cost what they cost.
The text model is MLX 4-bit (group 64, embedding included) as mlx-community's 4-bit Qwen2-VLs
are; the tower stays f32.

    .deps/venv-vlm/bin/python benchmarks/make_qwen2vl.py TOKENIZER_DIR OUT_DIR

TOKENIZER_DIR is .deps/ref/smollm2-f32: its byte-level BPE tokenizer (Qwen's is not on PyPI)
with Qwen's special tokens added and never-matched entries filling it to 151936 ids, so every
id decodes. Seeded: the same folder every time.
"""
import json
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np

TEMPLATE = ("{% set image_count = namespace(value=0) %}{% for message in messages %}"
            "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a "
            "helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
            "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
            "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
            "content or 'image_url' in content %}<|vision_start|><|image_pad|><|vision_end|>"
            "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
            "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
VOCAB = 151936
HIDDEN, LAYERS, HEADS, KV, FFN = 1536, 28, 12, 2, 8960
VISION = {"depth": 32, "embed_dim": 1280, "hidden_size": HIDDEN, "num_heads": 16, "mlp_ratio": 4,
          "in_channels": 3, "patch_size": 14, "spatial_patch_size": 14, "spatial_merge_size": 2,
          "temporal_patch_size": 2}
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
            "<|image_pad|>", "<|video_pad|>"]


def main(tok_dir, out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tok = json.loads((Path(tok_dir) / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    base = max(max(vocab.values()), max(t["id"] for t in tok["added_tokens"])) + 1
    # SmolLM2 has <|im_start|> and <|im_end|> already; the others take the last ids, after
    # never-matched entries that fill the vocabulary (tokenizers numbers added tokens after it).
    ids = {t["content"]: t["id"] for t in tok["added_tokens"] if t["content"] in SPECIALS}
    new = [s for s in SPECIALS if s not in ids]
    for i in range(base, VOCAB - len(new)):
        vocab[f"\u0100\u0100extra{i}"] = i
    for k, name in enumerate(new):
        ids[name] = VOCAB - len(new) + k
        tok["added_tokens"].append({"id": ids[name], "content": name, "single_word": False,
                                    "lstrip": False, "rstrip": False, "normalized": False,
                                    "special": True})
    (out / "tokenizer.json").write_text(json.dumps(tok))

    def mat(o, i):
        return mx.array(rng.uniform(-1, 1, (o, i)).astype(np.float32) * (1.7 / np.sqrt(i)))

    def vec(n, scale=0.02, offset=0.0):
        return mx.array((offset + rng.uniform(-1, 1, n) * scale).astype(np.float32))

    def q4(weights, name, w):
        q, s, b = mx.quantize(w, group_size=64, bits=4)
        weights[f"{name}.weight"], weights[f"{name}.scales"], weights[f"{name}.biases"] = q, s, b

    weights = {}
    hd = HIDDEN // HEADS
    q4(weights, "model.embed_tokens", mat(VOCAB, HIDDEN) * 20)
    for i in range(LAYERS):
        l = f"model.layers.{i}"
        for proj, o in (("q_proj", HIDDEN), ("k_proj", KV * hd), ("v_proj", KV * hd)):
            q4(weights, f"{l}.self_attn.{proj}", mat(o, HIDDEN))
            weights[f"{l}.self_attn.{proj}.bias"] = vec(o)
        q4(weights, f"{l}.self_attn.o_proj", mat(HIDDEN, HIDDEN))
        q4(weights, f"{l}.mlp.gate_proj", mat(FFN, HIDDEN))
        q4(weights, f"{l}.mlp.up_proj", mat(FFN, HIDDEN))
        q4(weights, f"{l}.mlp.down_proj", mat(HIDDEN, FFN))
        weights[f"{l}.input_layernorm.weight"] = vec(HIDDEN, 0.1, 1.0)
        weights[f"{l}.post_attention_layernorm.weight"] = vec(HIDDEN, 0.1, 1.0)
        mx.eval(weights)
    weights["model.norm.weight"] = vec(HIDDEN, 0.1, 1.0)
    d, p, t = VISION["embed_dim"], VISION["patch_size"], VISION["temporal_patch_size"]
    f = d * VISION["mlp_ratio"]
    weights["visual.patch_embed.proj.weight"] = mat(d, 3 * t * p * p).reshape(d, 3, t, p, p)
    for i in range(VISION["depth"]):
        b = f"visual.blocks.{i}"
        for n in ("norm1", "norm2"):
            weights[f"{b}.{n}.weight"] = vec(d, 0.1, 1.0)
            weights[f"{b}.{n}.bias"] = vec(d)
        for name, o, i_ in (("attn.qkv", 3 * d, d), ("attn.proj", d, d), ("mlp.fc1", f, d),
                            ("mlp.fc2", d, f)):
            weights[f"{b}.{name}.weight"] = mat(o, i_)
            weights[f"{b}.{name}.bias"] = vec(o)
        mx.eval(weights)
    weights["visual.merger.ln_q.weight"] = vec(d, 0.1, 1.0)
    weights["visual.merger.ln_q.bias"] = vec(d)
    weights["visual.merger.mlp.0.weight"] = mat(4 * d, 4 * d)
    weights["visual.merger.mlp.0.bias"] = vec(4 * d)
    weights["visual.merger.mlp.2.weight"] = mat(HIDDEN, 4 * d)
    weights["visual.merger.mlp.2.bias"] = vec(HIDDEN)
    cfg = {"model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"],
           "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "intermediate_size": FFN,
           "num_attention_heads": HEADS, "num_key_value_heads": KV, "rms_norm_eps": 1e-6,
           "vocab_size": VOCAB, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
           "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
           "tie_word_embeddings": True, "eos_token_id": ids["<|im_end|>"],
           "image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
           "vision_start_token_id": ids["<|vision_start|>"],
           "vision_end_token_id": ids["<|vision_end|>"],
           "vision_config": dict(VISION, skip_vision=True),
           "quantization": {"group_size": 64, "bits": 4}}
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "add_bos_token": False,
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 32768,
        "processor_class": "Qwen2VLProcessor"}, indent=1))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
        "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "min_pixels": 3136,
        "max_pixels": 12845056, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True}, indent=1))
    print(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
