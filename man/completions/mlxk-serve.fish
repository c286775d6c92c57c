complete -c mlxk-serve -l host -d 'Address to bind; 127.0.0.1 keeps it on this machine, 0.0.0.0 exposes it' -r
complete -c mlxk-serve -l port -d 'Port to listen on (0 picks a free one; the address is printed to stderr)' -r
complete -c mlxk-serve -l api-key -d 'Require `Authorization: Bearer KEY` on every /v1 route' -r
complete -c mlxk-serve -l queue -d 'Requests that may wait beyond the ones running before new ones get 429' -r
complete -c mlxk-serve -l parallel -d 'Generations run interleaved on the loaded model: a new request is prefilled at once and its first token does not wait for the others to finish (each holds its own KV cache; 1 serves them one at a time, in order)' -r
complete -c mlxk-serve -l max-body-bytes -d 'Largest request body accepted (413 above it; pictures come inline, base64)' -r
complete -c mlxk-serve -l max-upload-bytes -d 'Largest audio upload the /v1/audio routes accept (413 above it)' -r
complete -c mlxk-serve -l max-tokens -d 'Tokens generated when a request gives no max_tokens' -r
complete -c mlxk-serve -l log -d 'Write the per-request JSON log lines to FILE instead of stderr' -r -F
complete -c mlxk-serve -l report -d 'Append a benchmark report record (schema 0.2.2) per generation to FILE (a request\'s `X-Mlxk-Test: NAME` header names its test `mlxk-serve::NAME`)' -r -F
complete -c mlxk-serve -l prefill-step -d 'Prompt tokens processed per prefill step' -r
complete -c mlxk-serve -l dequantize -d 'Unpack quantized weights to f32 at load'
complete -c mlxk-serve -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mlxk-serve -s V -l version -d 'Print version'
