complete -c mlxk-gate -l threshold -d 'Largest allowed ratio of estimated model memory to available memory' -r
complete -c mlxk-gate -l sys-root -d 'Read /proc and /sys below DIR instead of / (for tests; also MLXK_SYS_ROOT)' -r -F
complete -c mlxk-gate -l allow-warn -d 'Let vision/audio models over the memory threshold through with a warning'
complete -c mlxk-gate -l drop-blocked -d 'Leave blocked records out of the output (and exit 0 for them)'
complete -c mlxk-gate -l json -d 'Write JSON Lines even on a terminal'
complete -c mlxk-gate -l human -d 'Write a table even on a pipe'
complete -c mlxk-gate -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mlxk-gate -s V -l version -d 'Print version'
