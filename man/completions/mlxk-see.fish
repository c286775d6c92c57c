complete -c mlxk-see -l image-dir -d 'Run the prompt on every image in DIR (png, jpg, jpeg, webp, gif, bmp, tif, tiff; not hidden files), one at a time, in file-name order' -r -F
complete -c mlxk-see -s p -l prompt -d 'Prompt text; `-` reads it from stdin (default with images: "Describe this image.")' -r
complete -c mlxk-see -l prompt-file -d 'Read the prompt from a file' -r -F
complete -c mlxk-see -l prompts -d 'Run a batch on one load: JSON Lines, each {"prompt": TEXT, "images": [FILE…], options} (images relative to FILE\'s folder; none for text only; options: system, max_tokens, temperature, top_p, top_k, min_p, repetition_penalty, seed, stop)' -r -F
complete -c mlxk-see -l system -d 'System message for the chat template' -r
complete -c mlxk-see -s n -l max-tokens -d 'Maximum number of tokens to generate' -r
complete -c mlxk-see -l temp -d 'Sampling temperature (0 = greedy)' -r
complete -c mlxk-see -l top-p -d 'Nucleus sampling: keep the most likely tokens up to this probability mass' -r
complete -c mlxk-see -l top-k -d 'Keep only the K most likely tokens (0 = off)' -r
complete -c mlxk-see -l min-p -d 'Drop tokens less likely than P × the most likely one (0 = off)' -r
complete -c mlxk-see -l repetition-penalty -d 'Penalise the last 20 generated/prompt tokens (1 = off)' -r
complete -c mlxk-see -l seed -d 'Random seed for sampling (same seed, same output); default: from the clock' -r
complete -c mlxk-see -l stop -d 'Stop when this text is generated (not printed); repeatable' -r
complete -c mlxk-see -l prefill-step -d 'Prompt tokens processed per prefill step' -r
complete -c mlxk-see -l report -d 'Append a benchmark report record (schema 0.2.2) per prompt to FILE' -r -F
complete -c mlxk-see -l no-reasoning -d 'Leave a reasoning model\'s thinking out of the text output'
complete -c mlxk-see -l json -d 'Write JSON Lines records instead of plain text'
complete -c mlxk-see -l stream -d 'With --json: also write a `delta` record per piece of text'
complete -c mlxk-see -s v -l verbose -d 'Print what was loaded and how (towers, image tokens, dtype policy, timings) to stderr'
complete -c mlxk-see -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mlxk-see -s V -l version -d 'Print version'
