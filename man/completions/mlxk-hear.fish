complete -c mlxk-hear -l language -d 'Spoken language (default: detect)' -r
complete -c mlxk-hear -l json -d 'Write JSON Lines records'
complete -c mlxk-hear -s h -l help -d 'Print help'
complete -c mlxk-hear -s V -l version -d 'Print version'
