"""``vhlake keys ...``: API keys for the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from vhlake import bootstrap
from vhlake.api.keys import KeyStore
from vhlake.cli.context import reading, writing
from vhlake.cli.output import err, out, print_table
from vhlake.settings import Settings

keys_app = typer.Typer(
    help="API keys: who may call the HTTP API, and for which marketplaces.", no_args_is_help=True
)


@keys_app.command("create")
def create(
    ctx: typer.Context,
    scope: Annotated[str, typer.Option(help="ingest (POST /v1/events), read (analytics) or admin (both).")],
    marketplace: Annotated[
        list[str] | None,
        typer.Option("--marketplace", help="Restrict the key to this marketplace (repeat for several)."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
) -> None:
    """Create a key. It is shown once, alone on the last line of stdout; the lake keeps only its hash."""
    settings = writing(ctx)
    _warn_unseen_marketplaces(settings, marketplace or [])
    key_id, key = KeyStore(bootstrap.build_lake(settings)).create(
        scope, marketplaces=marketplace, description=description
    )
    where = ", ".join(marketplace) if marketplace else "every marketplace"
    err.print(f"created key {key_id} ({scope}, {where}); store it now, it cannot be shown again:")
    out.print(key, highlight=False, soft_wrap=True)


def _warn_unseen_marketplaces(settings: Settings, marketplaces: list[str]) -> None:
    """A marketplace bronze never saw is likely a typo (``shoppe``): say so, and which ones it saw. Not
    refused: a key may be handed out before the marketplace's first event."""
    if not marketplaces:
        return
    engine = bootstrap.build_query_engine(settings, "duckdb")
    try:
        seen = engine.execute(_SEEN_SQL).column("marketplace").to_pylist()
    finally:
        engine.close()
    for name in sorted(set(marketplaces) - set(seen)):
        known = ", ".join(sorted(seen)) or "none yet"
        err.print(
            f"[yellow]warning:[/yellow] the lake has never seen marketplace {name!r} (it has: {known})",
            highlight=False,
            soft_wrap=True,
        )


_SEEN_SQL = "SELECT DISTINCT marketplace FROM validation_events_bronze WHERE marketplace IS NOT NULL"


@keys_app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """Keys (ids, scopes, marketplaces, created, revoked), never the keys themselves."""
    print_table(out, KeyStore(bootstrap.build_lake(reading(ctx))).list(), max_rows=1000)


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key id (vhlake keys list).")]
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    if not KeyStore(bootstrap.build_lake(reading(ctx))).revoke(key_id):
        err.print(f"[red]error:[/red] no live key {key_id}")
        raise typer.Exit(1)
    out.print(f"revoked {key_id}")
