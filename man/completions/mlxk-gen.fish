complete -c mlxk-gen -s p -l prompt -d 'Prompt text; `-` reads it from stdin' -r
complete -c mlxk-gen -l prompt-file -d 'Read the prompt from a file' -r -F
complete -c mlxk-gen -l prompts -d 'Run every prompt of a JSON Lines file on each model, loaded once: one line per prompt, `{"prompt": TEXT}` or `{"messages": [{"role", "content"}, …]}`, optionally with `system`, `raw`, `max_tokens`, `temperature`, `top_p`, `top_k`, `min_p`, `repetition_penalty`, `seed`, `stop` (the options here are the defaults). A bad line is an `error` record naming it; the others still run' -r -F
complete -c mlxk-gen -l system -d 'System message for the chat template' -r
complete -c mlxk-gen -l prompt-cache -d 'Reuse the KV state saved in FILE (a .safetensors file) for the part of the prompt it shares, then save this prompt\'s there; a cache of another model or build is refused' -r -F
complete -c mlxk-gen -s n -l max-tokens -d 'Maximum number of tokens to generate' -r
complete -c mlxk-gen -l temp -d 'Sampling temperature (0 = greedy)' -r
complete -c mlxk-gen -l top-p -d 'Nucleus sampling: keep the most likely tokens up to this probability mass' -r
complete -c mlxk-gen -l top-k -d 'Keep only the K most likely tokens (0 = off)' -r
complete -c mlxk-gen -l min-p -d 'Drop tokens less likely than P × the most likely one (0 = off)' -r
complete -c mlxk-gen -l repetition-penalty -d 'Penalise the last 20 generated/prompt tokens (1 = off)' -r
complete -c mlxk-gen -l seed -d 'Random seed for sampling (same seed, same output); default: from the clock' -r
complete -c mlxk-gen -l stop -d 'Stop when this text is generated (not printed); repeatable' -r
complete -c mlxk-gen -l truncate -d 'Cut a prompt longer than the context from the left instead of failing' -r -f -a "left\t''"
complete -c mlxk-gen -l prefill-step -d 'Prompt tokens processed per prefill step' -r
complete -c mlxk-gen -l report -d 'Append a benchmark report record (schema 0.2.2) per model to FILE' -r -F
complete -c mlxk-gen -l raw -d 'Skip the chat template and feed the prompt as is'
complete -c mlxk-gen -l no-think -d 'Tell templates that support it (`enable_thinking`) not to think first'
complete -c mlxk-gen -l no-reasoning -d 'Leave a reasoning model\'s thinking (`<think>…</think>`) out of the text output; on a terminal it is shown dimmed, with --json it is the result\'s `reasoning` field and `delta` records with `"part": "reasoning"`'
complete -c mlxk-gen -l dequantize -d 'Unpack quantized weights to f32 at load (4–8× the memory; the dense f32 kernels instead of the quantized ones)'
complete -c mlxk-gen -l json -d 'Write JSON Lines records instead of plain text'
complete -c mlxk-gen -l stream -d 'With --json: also write a `delta` record per piece of text'
complete -c mlxk-gen -s v -l verbose -d 'Print what was loaded and how (dtype policy, quantization, timings) to stderr'
complete -c mlxk-gen -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mlxk-gen -s V -l version -d 'Print version'
