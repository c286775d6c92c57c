"""Greedy reference tokens from mlx-lm for mlxk-gen's parity tests.

Runs mlx-lm (mlx 0.32.2, mlx-lm 0.32.2 — the same libmlx as mlxk links) on the folders made by
convert_smollm2.py and writes goldens/smollm2.json: for each case the prompt token ids (chat
template rendered by transformers, encoded without special tokens; raw prompts encoded with
them, as `mlx_lm.generate` does) and the greedy tokens up to the first EOS or max_tokens.

Usage: python mlx_lm_goldens.py REF_DIR OUT.json
"""
import json
import sys
from pathlib import Path

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import generate_step

LONG = (
    "Summarise the following notes in two sentences.\n\n"
    + "\n".join(
        f"Note {i}: the {w} team met on day {i} to review {t}, agreed on {a} next steps, and "
        f"asked for a follow-up on {f} before the end of the week."
        for i, (w, t, a, f) in enumerate(
            [("platform", "latency dashboards", "three", "cache misses"),
             ("mobile", "crash reports", "two", "memory spikes"),
             ("data", "pipeline failures", "four", "schema drift"),
             ("security", "access reviews", "five", "token rotation"),
             ("design", "onboarding flows", "two", "copy changes"),
             ("infra", "cost reports", "three", "idle machines"),
             ("support", "ticket backlog", "six", "refund policy"),
             ("research", "benchmark results", "two", "dataset licences")], start=1)
    )
)

CASES = [
    # (folder, prompt, chat, max_tokens)
    ("smollm2-q4", "The capital of France is", False, 32),
    ("smollm2-q4", "What is the capital of France?", True, 32),
    ("smollm2-q4", LONG, True, 24),
    ("smollm2-f32", "The capital of France is", False, 32),
    ("smollm2-f32", "What is the capital of France?", True, 32),
    ("smollm2-f32", LONG, True, 24),
]


def versions():
    import importlib.metadata as md
    return {p: md.version(p) for p in ("mlx", "mlx-cpu", "mlx-lm", "transformers", "tokenizers")}


def greedy(model, tokenizer, ids, max_tokens):
    out = []
    for tok, _ in generate_step(mx.array(ids), model, max_tokens=max_tokens):
        tok = int(tok)
        if tok in tokenizer.eos_token_ids:
            break
        out.append(tok)
    return out


def main(ref_dir, out_path):
    cases = []
    loaded = {}
    for folder, prompt, chat, n in CASES:
        if folder not in loaded:
            loaded[folder] = load(str(Path(ref_dir) / folder))
        model, tokenizer = loaded[folder]
        if chat:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
            ids = tokenizer.encode(text, add_special_tokens=False)
        else:
            ids = tokenizer.encode(prompt, add_special_tokens=True)
        tokens = greedy(model, tokenizer, ids, n)
        cases.append({"model": folder, "prompt": prompt, "chat": chat, "max_tokens": n,
                      "prompt_ids": ids, "tokens": tokens, "text": tokenizer.decode(tokens)})
        print(folder, "chat" if chat else "raw", len(ids), "prompt tokens:", repr(tokenizer.decode(tokens)))
    with open(out_path, "w") as f:
        json.dump({"made_by": "tests/reference/mlx_lm_goldens.py", "versions": versions(),
                   "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
