"""`python -m sslkit` runs the command-line interface."""

from sslkit.cli import main

main()
