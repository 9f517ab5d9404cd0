"""``python -m vhlake`` runs the command line."""

from vhlake.cli import main

main()
