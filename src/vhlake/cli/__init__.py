"""The ``vhlake`` command line."""

from vhlake.cli.app import app, main

__all__ = ["app", "main"]
