"""One exception family for vhlake.

Adapters translate driver errors (deltalake, duckdb, sqlite, ...) into these at their boundary with
``raise ... from exc`` so callers, and the CLI, handle one family with clear one-line messages.
"""

from __future__ import annotations


class VhlakeError(Exception):
    """Base class of every error vhlake raises on purpose."""


class ConfigError(VhlakeError):
    """Settings are missing or inconsistent."""


class LakeError(VhlakeError):
    """A lake table cannot be read or written."""


class SourceError(VhlakeError):
    """An input (file, event log, broker) cannot be read."""


class QueryError(VhlakeError):
    """A SQL query cannot be parsed, rendered or executed."""


class PublishError(VhlakeError):
    """An event could not be handed to the event log."""
