"""DuckDB over the lake's tables and in-memory Arrow: the helpers ingest, pipeline, lifecycle and query share."""
