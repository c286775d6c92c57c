complete -c report-validate -l to -d 'Target schema version for --migrate' -r
complete -c report-validate -l json -d 'Write problems (and a closing summary) as JSON Lines records'
complete -c report-validate -l migrate -d 'Upgrade the records to the --to version and write them to stdout'
complete -c report-validate -s h -l help -d 'Print help (see more with \'--help\')'
complete -c report-validate -s V -l version -d 'Print version'
