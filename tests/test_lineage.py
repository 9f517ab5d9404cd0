"""vhlake lineage / history / tables --sizes: what each table comes from, its commits, its partitions."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
from typer.testing import CliRunner

from conftest import build_analytics_lake
from vhlake.cli.app import app
from vhlake.lake.inventory import daily_growth, partition_sizes, table_inventory
from vhlake.lake.tables import BRONZE, GOLD, SILVER
from vhlake.lifecycle.lineage import history, lineage


def test_lineage_history_and_sizes_describe_the_lake(tmp_path: Path) -> None:
    lake = build_analytics_lake(tmp_path, jobs=600, seed=2)
    silver = lineage(lake, SILVER)
    assert BRONZE.name in silver["upstream"] and GOLD.name in silver["downstream"]
    bronze_version = lake.open(BRONZE).version()  # type: ignore[union-attr]
    assert silver["last_pipeline_run"]["bronze_versions"][1] == bronze_version
    assert silver["version"] == lake.open(SILVER).version()  # type: ignore[union-attr]

    commits = history(lake, GOLD, limit=2)
    assert commits.num_rows == 2 and commits["version"].to_pylist() == sorted(
        commits["version"].to_pylist(), reverse=True
    )

    sizes = partition_sizes(lake, SILVER)
    total = table_inventory(lake, [SILVER]).to_pylist()[0]
    assert (
        pc.sum(sizes["rows"]).as_py() == total["rows"]
        and pc.sum(sizes["size_bytes"]).as_py() == total["size_bytes"]
    )
    assert (daily_growth(partition_sizes(lake, BRONZE)) or 0) > 0

    result = CliRunner().invoke(app, ["--lake", lake.uri, "lineage", "nope"])
    assert result.exit_code == 2 and "no table 'nope'" in result.output
