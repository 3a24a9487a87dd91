"""The `hn` command line: Typer apps that parse, call the core and render."""
