complete -c report-gen -l compare -d 'An older report to compare against' -r -F
complete -c report-gen -s o -l output -d 'Output Markdown file (`-` for stdout); default: benchmarks/reports/BENCHMARK-<version>-<date>.md' -r -F
complete -c report-gen -s h -l help -d 'Print help (see more with \'--help\')'
complete -c report-gen -s V -l version -d 'Print version'
