"""One mlx-lm run for benchmarks/gen.sh: load time, prefill and decode tok/s as JSON.
Usage: python mlx_lm_run.py MODEL_DIR PROMPT_FILE MAX_TOKENS"""
import json
import sys
import time

from mlx_lm import load, stream_generate

t = time.perf_counter()
model, tokenizer = load(sys.argv[1])
load_s = time.perf_counter() - t
prompt = tokenizer.encode(open(sys.argv[2]).read(), add_special_tokens=True)
last = None
for last in stream_generate(model, tokenizer, prompt, max_tokens=int(sys.argv[3])):
    pass
print(json.dumps({"load_s": load_s, "prefill_tok_s": last.prompt_tps, "decode_tok_s": last.generation_tps,
                  "prompt_tokens": last.prompt_tokens, "generated_tokens": last.generation_tokens}))
