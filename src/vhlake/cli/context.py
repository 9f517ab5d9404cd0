"""Which lake a command works on: readers need one that exists, writers create one and say so.

A mistyped ``--lake`` must not read as an empty lake (``0`` rows, "nothing new") nor quietly become a new
one: commands that only read fail with one line naming the location; commands that write (ingest,
publish, demo, serve, keys create) create it and say so on stderr.
"""

from __future__ import annotations

import typer

from vhlake import bootstrap
from vhlake.cli.output import err
from vhlake.errors import LakeError
from vhlake.settings import Settings


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root command built (environment, ``.env``, then ``--lake``)."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def reading(ctx: typer.Context) -> Settings:
    """The settings of a command that reads the lake: the lake must exist."""
    settings = settings_of(ctx)
    problem = bootstrap.lake_absence(settings)
    if problem is not None:
        raise LakeError(problem)
    return settings


def querying(ctx: typer.Context, engine: str | None) -> Settings:
    """The settings of a query: on the embedded engine the lake must exist; a SQL warehouse has its own."""
    settings = settings_of(ctx)
    return settings if (engine or settings.query_engine) == "databricks" else reading(ctx)


def writing(ctx: typer.Context) -> Settings:
    """The settings of a command that writes the lake, which it creates when there is none yet."""
    settings = settings_of(ctx)
    if bootstrap.lake_absence(settings) is not None:
        root = bootstrap.create_lake(settings)
        err.print(f"created a new lake at {root}", highlight=False, soft_wrap=True)
    return settings
