complete -c memplot -s o -l output -d 'Output file (.html or .svg); default: <first input>-timeline.html' -r -F
complete -c memplot -l format -d 'Output format; default: from the output file\'s extension' -r -f -a "html\t''
svg\t''"
complete -c memplot -s h -l help -d 'Print help (see more with \'--help\')'
complete -c memplot -s V -l version -d 'Print version'
