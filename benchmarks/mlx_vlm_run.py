"""One mlx-vlm run for benchmarks/see.sh: load MODEL, read IMAGE, prompt PROMPT, greedy N tokens.
Prints one JSON line: load_s, encode_s (the image through processor, tower and projector into
the prompt's embeddings, timed on its own first, cold as ours is), ttft_s (prompt to first
token, encode included, as mlx-vlm's generate runs it), prefill_s (ttft_s less the encode timed
again, warm as it was inside the generation), prompt_tokens, decode_tok_s."""
import json
import sys
import time
from pathlib import Path

import mlx.core as mx


def main(model_dir, image_path, prompt, n):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reference"))
    from vlm_goldens import patch_transformers_pil_processors
    patch_transformers_pil_processors()
    from mlx_vlm.generate import generate_step
    from mlx_vlm.prompt_utils import apply_chat_template
    from mlx_vlm.utils import load, load_image, prepare_inputs
    t0 = time.perf_counter()
    model, processor = load(model_dir)
    mx.eval(model.parameters())
    load_s = time.perf_counter() - t0
    text = apply_chat_template(processor, model.config, prompt, num_images=1)

    def inputs():
        image = load_image(image_path)
        if model.config.model_type == "llava":
            x = processor(images=[image], text=text, return_tensors="np")
            return mx.array(x["input_ids"]), mx.array(x["pixel_values"]), {}
        # SmolVLM (pixel_attention_mask) and Qwen2-VL (image_grid_thw) through mlx-vlm's own
        # input path.
        x = prepare_inputs(processor, images=[image], prompts=text,
                           image_token_index=getattr(model.config, "image_token_index", None))
        keys = ("pixel_attention_mask", "image_grid_thw")
        return x["input_ids"], x["pixel_values"], {k: x[k] for k in keys if k in x}

    # The encode alone first, cold as ours is (this is the reported encode time).
    t0 = time.perf_counter()
    ids0, pixels0, extra0 = inputs()
    mx.eval(model.get_input_embeddings(ids0, pixels0, **extra0).inputs_embeds)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids, pixels, extra = inputs()
    steps = generate_step(ids, model, pixels, None, max_tokens=n, temperature=0.0, **extra)
    first, count = None, 0
    for i, (tok, _) in enumerate(steps):
        if i == 0:
            first = time.perf_counter()
        count += 1
        if count >= n:
            break
    end = time.perf_counter()
    # The encode again, warm as it was inside the generation: the prefill is the time to the
    # first token less this.
    t1 = time.perf_counter()
    ids2, pixels2, extra2 = inputs()
    mx.eval(model.get_input_embeddings(ids2, pixels2, **extra2).inputs_embeds)
    warm_s = time.perf_counter() - t1
    print(json.dumps({"load_s": load_s, "encode_s": encode_s, "ttft_s": first - t0,
                      "prefill_s": (first - t0) - warm_s,
                      "prompt_tokens": int(ids.shape[1]),
                      "decode_tok_s": (count - 1) / (end - first) if count > 1 else 0.0}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
