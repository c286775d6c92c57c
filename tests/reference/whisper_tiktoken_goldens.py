"""mlx-whisper 0.4.3's tokenizer (tiktoken over its bundled gpt2 / multilingual vocabularies) on a
set of texts, for mlxk-hear's test of its built-in vocabularies: the ids of each text, and the
non-speech tokens it suppresses.

Re-run from the repository root:

    .deps/venv-whisper/bin/python tests/reference/whisper_tiktoken_goldens.py \
        tests/reference/goldens/whisper_tiktoken.json
"""
import importlib.metadata as md
import json
import sys

from mlx_whisper.tokenizer import get_tokenizer

TEXTS = [
    " Hello, world! It's 2026.",
    " The quick brown fox jumps over the lazy dog.",
    "  two  spaces\tand a tab\nand a newline",
    " Grüße aus Köln – «Straße» über 100 €.",
    " 日本語のテキストと中文。",
    " (laughs) [music] ♪♪ <<>> -- 「」",
    " don't won't I'd we'll you've they're",
    " 3.14159 and 1,000,000 and 0x1F",
    " Roundfire and Nog are the names of two dogs.",
    "",
]
out = {"versions": {p: md.version(p) for p in ("mlx-whisper", "tiktoken")}, "texts": TEXTS}
for name, multilingual in (("gpt2", False), ("multilingual", True)):
    t = get_tokenizer(multilingual, num_languages=99, language="en", task="transcribe")
    out[name] = {"ids": [t.encode(x) for x in TEXTS],
                 "non_speech_tokens": list(t.non_speech_tokens)}
with open(sys.argv[1], "w") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
    f.write("\n")
