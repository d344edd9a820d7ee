"""The `mlh` command line: one typer application (`app`) with data, predictor and analysis
sub-commands; each command parses, calls one library function and writes its output."""
