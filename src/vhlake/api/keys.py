"""API keys, Unity-Catalog-like but local: a scope, optionally a set of marketplaces, hashed at rest.

A key reads ``vhk_<key id>_<secret>``; the lake stores only the sha256 of the whole key, so a leaked
``api_keys`` table lets no one in. Keys are looked up by id and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa

from vhlake.errors import ConfigError
from vhlake.lake.delta import Lake
from vhlake.lake.tables import API_KEYS

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")
_PREFIX = "vhk"
RECHECK_S = 1.0
"""On an object store, keys created or revoked by another process count after at most this long: checking
the table on every request would put a round trip to the store in front of each one (see
:meth:`~vhlake.lake.delta.Lake.open_recent`). A key revoked through this store counts at once."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    scope: Scope
    marketplaces: frozenset[str] | None  # None: all of them

    def may(self, scope: Scope) -> bool:
        """admin may everything; read and ingest only themselves."""
        return self.scope == "admin" or self.scope == scope

    def sees(self, marketplace: str) -> bool:
        return self.marketplaces is None or marketplace in self.marketplaces


@dataclass(frozen=True)
class _Stored:
    key: ApiKey
    key_hash: str
    revoked: bool


class KeyStore:
    """Creates, revokes and checks keys kept in the ``api_keys`` table (re-read when it changes)."""

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._lock = threading.Lock()
        self._version: int | None = -2
        self._keys: dict[str, _Stored] = {}

    def create(
        self, scope: str, *, marketplaces: list[str] | None = None, description: str | None = None
    ) -> tuple[str, str]:
        """A new key: returns ``(key id, the key)``; the key is shown once and stored only hashed."""
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}")
        key_id = secrets.token_hex(6)
        key = f"{_PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"
        row = {
            "key_id": key_id,
            "key_hash": _hash(key),
            "scope": scope,
            "marketplaces": sorted(set(marketplaces)) if marketplaces else None,
            "description": description,
            "created_at": datetime.now(UTC),
            "revoked_at": None,
        }
        self._lake.append(API_KEYS, pa.Table.from_pylist([row], schema=API_KEYS.schema))
        return key_id, key

    def revoke(self, key_id: str) -> bool:
        """Revoke ``key_id``; False when there is no such live key."""
        self._reload()
        stored = self._keys.get(key_id)
        if stored is None or stored.revoked:
            return False
        delta = self._lake.open(API_KEYS)
        assert delta is not None
        delta.update(
            updates={"revoked_at": "current_timestamp()"}, predicate=f"key_id = '{_checked_id(key_id)}'"
        )
        return True

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key ``presented`` is, or None."""
        return self.examine(presented)[0]

    def examine(self, presented: str) -> tuple[ApiKey | None, str]:
        """The live key ``presented`` is (or None), and what was found: ``ok``, ``malformed key``,
        ``unknown key``, ``revoked key`` or ``wrong secret``."""
        key_id = presented_key_id(presented)
        if key_id is None:
            return None, "malformed key"
        self._reload()
        stored = self._keys.get(key_id)
        if stored is None:
            return None, "unknown key"
        if not hmac.compare_digest(stored.key_hash, _hash(presented)):
            return None, "wrong secret"
        if stored.revoked:
            return None, "revoked key"
        return stored.key, "ok"

    def list(self) -> pa.Table:
        delta = self._lake.open(API_KEYS)
        table = API_KEYS.schema.empty_table() if delta is None else pa.table(delta.to_pyarrow_table())
        return table.drop_columns(["key_hash"])

    def _reload(self) -> None:
        with self._lock:
            delta = self._lake.open_recent(API_KEYS, RECHECK_S)
            version = None if delta is None else delta.version()
            if version == self._version:
                return
            rows = [] if delta is None else pa.table(delta.to_pyarrow_table()).to_pylist()
            self._keys = {
                r["key_id"]: _Stored(
                    ApiKey(
                        r["key_id"], r["scope"], frozenset(r["marketplaces"]) if r["marketplaces"] else None
                    ),
                    r["key_hash"],
                    r["revoked_at"] is not None,
                )
                for r in rows
            }
            self._version = version


def presented_key_id(presented: str) -> str | None:
    """The key id a presented key names (``vhk_<id>_<secret>``), or None when it is not of that form."""
    parts = presented.split("_", 2)
    if len(parts) < 3 or parts[0] != _PREFIX or not _is_key_id(parts[1]):
        return None
    return parts[1]


def _is_key_id(text: str) -> bool:
    return 0 < len(text) <= 32 and all(c in "0123456789abcdef" for c in text)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _checked_id(key_id: str) -> str:
    """Key ids are hex we made; anything else never reaches a predicate."""
    if not _is_key_id(key_id):
        raise ConfigError(f"not a key id: {key_id!r}")
    return key_id
