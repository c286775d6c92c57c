complete -c mlxk-see -s i -l image -d 'Image files to describe' -r -F
complete -c mlxk-see -s p -l prompt -d 'Prompt text' -r
complete -c mlxk-see -l json -d 'Write JSON Lines records'
complete -c mlxk-see -s h -l help -d 'Print help'
complete -c mlxk-see -s V -l version -d 'Print version'
