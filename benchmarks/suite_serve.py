"""The suite's mlxk-serve step: sends the prompt set to a running mlxk-serve for every model it
serves, as an application would (the OpenAI wire format over HTTP), one request at a time, each
named for the report with the X-Mlxk-Test header (`prompts[N]`, N the line, as mlxk-gen names
them). Prints one line per request; exits 1 if any request failed.
    python3 benchmarks/suite_serve.py BASE_URL PROMPTS.jsonl"""
import json
import sys
import urllib.error
import urllib.request

base, prompts = sys.argv[1].rstrip("/"), sys.argv[2]


def call(path, body=None, test=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if test:
        req.add_header("X-Mlxk-Test", test)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except ValueError:
            return e.code, {"error": {"message": "(no JSON body)"}}
    except (urllib.error.URLError, OSError, ValueError) as e:
        return 0, {"error": {"message": str(e)}}


status, models = call("/v1/models")
if status != 200:
    sys.exit(f"suite_serve.py: GET /v1/models answered {status}")
failed = 0
for model in [m["id"] for m in models["data"]]:
    for n, line in enumerate(open(prompts), 1):
        if not line.strip():
            continue
        p = json.loads(line)
        # The options of mlxk-gen's --prompts lines that the API has; mlxk-gen's defaults.
        body = {"model": model, "max_tokens": p.get("max_tokens", 256),
                "temperature": p.get("temperature", 0)}
        for k in ("top_p", "top_k", "min_p", "repetition_penalty", "seed", "stop"):
            if k in p:
                body[k] = p[k]
        if "messages" in p:
            path, body["messages"] = "/v1/chat/completions", p["messages"]
        elif p.get("raw"):
            path, body["prompt"] = "/v1/completions", p["prompt"]
        else:
            msgs = [{"role": "system", "content": p["system"]}] if p.get("system") else []
            path, body["messages"] = "/v1/chat/completions", msgs + [{"role": "user", "content": p["prompt"]}]
        status, r = call(path, body, f"prompts[{n}]")
        if status == 200:
            print(f"{model} prompts[{n}]: {r['usage']['completion_tokens']} tokens")
        else:
            failed += 1
            print(f"{model} prompts[{n}]: HTTP {status}: {r.get('error', {}).get('message')}")
sys.exit(1 if failed else 0)
