complete -c mlxk-hear -l language -d 'Spoken language, as a code or name (default: detected on multilingual models)' -r
complete -c mlxk-hear -l task -d 'transcribe, or translate into English' -r -f -a "transcribe\t''
translate\t''"
complete -c mlxk-hear -s f -l format -d 'Output format: txt, srt, vtt, tsv, json (one document), jsonl (segment records, then a transcript record)' -r -f -a "txt\t''
srt\t''
vtt\t''
tsv\t''
json\t''
jsonl\t''"
complete -c mlxk-hear -s o -l output -d 'Write the transcript to FILE (one input) or into DIR as <name>.<format> (several)' -r -F
complete -c mlxk-hear -l initial-prompt -d 'Text that comes before the audio (names, spellings, style) for the first window' -r
complete -c mlxk-hear -l temperature -d 'Temperature of the first decoding (0 = greedy)' -r
complete -c mlxk-hear -l temperature-increment-on-fallback -d 'Raise the temperature by this much after each failed check, up to 1 (0 = no fallback)' -r
complete -c mlxk-hear -l compression-ratio-threshold -d 'A window whose text compresses better than this (gzip ratio) is decoded again' -r
complete -c mlxk-hear -l logprob-threshold -d 'A window whose average token log-probability is below this is decoded again' -r
complete -c mlxk-hear -l no-speech-threshold -d 'A window is silence when <|nospeech|> is likelier than this and its text unlikely' -r
complete -c mlxk-hear -l beam-size -d 'Beam search with N beams at temperature 0 (1 = greedy, as mlx-whisper; faster-whisper and whisper.cpp default to 5)' -r
complete -c mlxk-hear -l patience -d 'With --beam-size: stop once N × PATIENCE hypotheses have ended' -r
complete -c mlxk-hear -l seed -d 'Random seed for the fallback temperatures' -r
complete -c mlxk-hear -l report -d 'Append a benchmark report record (schema 0.2.2) per file to FILE' -r -F
complete -c mlxk-hear -l no-condition-on-previous-text -d 'Decode each window without the previous window\'s text as context'
complete -c mlxk-hear -l without-timestamps -d 'Text only, no timestamps: the whole window is one segment'
complete -c mlxk-hear -l word-timestamps -d 'Time each word too (cross-attention alignment + DTW, as mlx-whisper): `words` in json, jsonl and --json records'
complete -c mlxk-hear -l json -d 'Write JSON Lines records (`load`, `segment`…, `transcript`, `unload`) to stdout'
complete -c mlxk-hear -s v -l verbose -d 'Print what was loaded and where the time went to stderr'
complete -c mlxk-hear -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mlxk-hear -s V -l version -d 'Print version'
