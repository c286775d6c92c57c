complete -c memmon -s o -l output -d 'Output file; `-` writes the samples to stdout (only without a command)' -r -F
complete -c memmon -l interval -d 'Sampling interval in milliseconds' -r
complete -c memmon -l duration -d 'Stop after this many seconds (only without a command)' -r
complete -c memmon -l sys-root -d 'Read /proc and /sys below DIR instead of / (for tests; also MLXK_SYS_ROOT)' -r -F
complete -c memmon -l csv -d 'Write CSV with a header instead of JSON Lines'
complete -c memmon -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memmon -s V -l version -d 'Print version'
