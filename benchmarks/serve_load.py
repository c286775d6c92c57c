"""A load generator for OpenAI-style servers (stdlib only): CONCURRENCY clients send REQUESTS
streamed chat completions in all and measure each one's time to first content and its end.
Prints one JSON line: requests/s, median and p90 time to first token, tokens/s, failures.
    python serve_load.py BASE_URL MODEL CONCURRENCY REQUESTS MAX_TOKENS"""
import concurrent.futures
import http.client
import json
import statistics
import sys
import time
import urllib.parse

base, model = sys.argv[1], sys.argv[2]
conc, total, max_tokens = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
url = urllib.parse.urlparse(base)
questions = ["What is a KV cache?", "Name three rivers in Europe.", "Why is the sky blue?",
             "What does a compiler do?", "Explain RAII in one sentence.", "What is 12 times 12?",
             "Give a synonym for quick.", "What is the boiling point of water?"]


def one(i):
    body = json.dumps({"model": model, "stream": True, "max_tokens": max_tokens,
                       "temperature": 0, "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": questions[i % len(questions)]}]})
    start = time.perf_counter()
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        return {"ok": False, "status": r.status}
    ttft, tokens = None, 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for ch in chunk.get("choices", []):
            if ch.get("delta", {}).get("content") and ttft is None:
                ttft = time.perf_counter() - start
    c.close()
    return {"ok": True, "ttft": ttft or 0.0, "total": time.perf_counter() - start, "tokens": tokens}


t0 = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(conc) as pool:
    results = list(pool.map(one, range(total)))
wall = time.perf_counter() - t0
ok = [r for r in results if r["ok"]]
ttfts = sorted(r["ttft"] for r in ok)
print(json.dumps({
    "concurrency": conc, "requests": total, "failed": total - len(ok),
    "req_per_s": len(ok) / wall,
    "ttft_median_s": statistics.median(ttfts) if ttfts else None,
    "ttft_p90_s": ttfts[int(0.9 * (len(ttfts) - 1))] if ttfts else None,
    "tokens_per_s": sum(r["tokens"] for r in ok) / wall,
}))
