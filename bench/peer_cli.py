"""The command line the benchmark's SQL peers share (bench/duckdb_build.py, bench/chdb_build.py):

python bench/<peer>_build.py BRONZE_PARQUET_DIR GOLD_PARQUET_DIR [--silver SILVER_DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol


class Build(Protocol):
    def __call__(
        self, bronze_dir: Path, silver_dir: Path, gold_dir: Path, *, updated_at: datetime
    ) -> None: ...


def peer_main(build: Build, *, name: str, description: str | None) -> None:
    """Parse the peer's arguments and run ``build``, its silver in a temporary folder unless given."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bronze", type=Path, help="a directory of Parquet files: bronze's rows")
    parser.add_argument("gold", type=Path, help="where gold.parquet is written")
    parser.add_argument(
        "--silver", type=Path, help="where silver.parquet is written (default: a temporary dir)"
    )
    args = parser.parse_args()
    now = datetime.now(UTC)
    if args.silver is not None:
        build(args.bronze, args.silver, args.gold, updated_at=now)
        return
    with tempfile.TemporaryDirectory(prefix=f"{name}-silver-") as silver:
        build(args.bronze, Path(silver), args.gold, updated_at=now)
