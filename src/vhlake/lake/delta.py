"""Delta Lake I/O for the lake's tables, with idempotent (exactly-once) appends.

Every write that must happen once carries a Delta application transaction ``(app_id, version)`` in the same
commit as its data: the Delta log, not a side file, records how far each source has been written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as fs
from deltalake import (
    CommitProperties,
    DeltaTable,
    Schema,
    Transaction,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.fs import DeltaStorageHandler
from deltalake.transaction import AddAction, RemoveAction

from vhlake.errors import ConfigError, LakeError
from vhlake.lake.encoding import delta_writer_properties
from vhlake.lake.partition_files import partition_text, write_files
from vhlake.lake.tables import TableDef

_COMMIT_ATTEMPTS = 5
_T = TypeVar("_T")


# S3 has no atomic rename: a Delta commit is safe there only as a put-if-absent of the version's log file
# (``If-None-Match: *``), which delta-rs does when object_store's conditional put is "etag". That is its
# default today; it is set explicitly so that an ``AWS_CONDITIONAL_PUT=disabled`` in the environment, or a
# changed default, cannot turn commits into overwrites (delta-rs reads options given here before the
# environment). delta-rs 1.x has no other S3 commit path: ``AWS_S3_LOCKING_PROVIDER=dynamodb`` is ignored
# with an error line, and ``AWS_S3_ALLOW_UNSAFE_RENAME`` no longer changes how commits are written.
_S3_SCHEMES = ("s3://", "s3a://")
_CONDITIONAL_PUT_KEYS = frozenset({"conditional_put", "aws_conditional_put"})


def safe_commit_options(uri: str, options: Mapping[str, str]) -> dict[str, str]:
    """``options`` plus what makes concurrent commits to ``uri`` safe: on S3, conditional put by ETag.

    Raises:
        ConfigError: the options turn conditional put off, so every commit would be refused.
    """
    merged = dict(options)
    if not uri.lower().startswith(_S3_SCHEMES):
        return merged
    given = {k: v for k, v in merged.items() if k.lower() in _CONDITIONAL_PUT_KEYS}
    if any(v.strip().lower() != "etag" for v in given.values()):
        raise ConfigError(
            f"conditional put {given} for {uri}: Delta commits on S3 need it set to etag (put-if-absent)"
        )
    if not given:
        merged["conditional_put"] = "etag"
    return merged


class CommitConflict(LakeError):
    """Other writers kept committing to the table first: the write is still needed and can be retried."""


class _Unread:
    """A transaction version the log files at hand could not tell."""


_UNREAD = _Unread()


@dataclass
class Lake:
    """Where the tables live: a local folder or an object-store URI, plus its storage options.

    Open tables are cached and brought up to date incrementally (only new commits are read), so a writer
    that commits often does not replay the Delta log on every batch.
    """

    uri: str
    storage_options: dict[str, str] = field(default_factory=dict)
    _handles: dict[str, DeltaTable] = field(default_factory=dict, init=False, repr=False, compare=False)
    # (table name, app id) -> (the table version, the app's transaction version there): txn_version
    _txns: dict[tuple[str, str], tuple[int, int | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # table name -> (when :meth:`open_recent` last checked it, monotonic; what it found)
    _checked: dict[str, tuple[float, DeltaTable | None]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    # Tables whose stored schema was checked for the contract's added columns: :meth:`ensure`
    _schema_checked: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.storage_options = safe_commit_options(self.uri, self.storage_options)

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri or self.uri.startswith("file://")

    @property
    def root_uri(self) -> str:
        """The lake's own folder: an absolute path on a local disk, else the URI."""
        if self.is_local:
            return str(Path(self.uri.removeprefix("file://")).expanduser().resolve())
        return self.uri.rstrip("/")

    def table_uri(self, table: TableDef) -> str:
        if self.is_local:
            return str(Path(self.root_uri) / table.relative_path)
        return f"{self.root_uri}/{table.relative_path}"

    def open(self, table: TableDef) -> DeltaTable | None:
        """The Delta table at its latest version, or None when it has not been written yet."""
        uri = self.table_uri(table)
        try:
            handle = self._handles.get(table.name)
            if handle is None:
                handle = DeltaTable(uri, storage_options=self.storage_options or None)
                self._handles[table.name] = handle
            elif not self.is_local or _next_commit(uri, handle.version()).exists():
                handle.update_incremental()
            return handle
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            raise LakeError(f"cannot open {table.name} at {uri}: {exc}") from exc

    def open_recent(self, table: TableDef, max_age_s: float) -> DeltaTable | None:
        """:meth:`open`, except that on an object store a table checked less than ``max_age_s`` ago is
        answered as it was then, without asking the store again.

        For readers that serve many requests a second (the API's key store and query engine): each check
        is a LIST and a GET on the store (tens of milliseconds on S3, hundreds on a loaded emulator), made
        under the reader's lock, so checking on every request queues the requests behind the store. A
        local lake is checked every time: there a check is one ``stat``."""
        if self.is_local or max_age_s <= 0:
            return self.open(table)
        checked = self._checked.get(table.name)
        # A table this lake created since (``ensure``) is no longer absent; its own writes move the handle.
        if (
            checked is not None
            and time.monotonic() - checked[0] < max_age_s
            and checked[1] is self._handles.get(table.name)
        ):
            return checked[1]
        handle = self.open(table)
        self._checked[table.name] = (time.monotonic(), handle)
        return handle

    def txn_version(self, table: TableDef, app_id: str) -> int | None:
        """The last version committed by ``app_id`` to ``table`` (None when it never wrote).

        deltalake's ``transaction_version`` replays the whole log since the last checkpoint (up to a
        hundred commit files, a GET each on an object store) on every call; the pipeline asks it of each
        derived table every batch. So the answer is kept with the table version it was read at, and
        brought forward by reading only the commits made since (usually one or two)."""
        delta = self.open(table)
        if delta is None:
            return None
        version, key = delta.version(), (table.name, app_id)
        known = self._txns.get(key)
        answer: int | _Unread | None = _UNREAD
        if known is not None and known[0] <= version:
            answer = self._txn_since(table, app_id, known[0], version, known[1])
        if isinstance(answer, _Unread):
            answer = delta.transaction_version(app_id)
        self._txns[key] = (version, answer)
        return answer

    def commit_infos(self, table: TableDef, first: int, last: int) -> dict[int, dict[str, Any]]:
        """The ``commitInfo`` of each version ``first .. last`` still in the log, by version, read from the
        commit files themselves; versions a cleanup removed (the oldest first) are absent.

        Not ``DeltaTable.history``: deltalake (1.6.6) reads the commits from the store but numbers them
        counting down from the handle's version, so one commit made by another writer since the handle
        was brought up to date shifts every number by one (and one more commit comes back than asked).
        The pipeline, reading bronze while the ingest commits to it, then took the compaction commit for
        the append before it and skipped that append's events (bench/soak.py: 226 jobs never reached
        silver)."""
        files = self.files(table)
        infos: dict[int, dict[str, Any]] = {}
        for version in range(last, max(first, 0) - 1, -1):
            actions = _commit_actions(files, version)
            if actions is None:  # cleaned up (past a checkpoint): so are all before it
                break
            infos[version] = _commit_info(actions)
        return infos

    def _txn_since(
        self, table: TableDef, app_id: str, since: int, version: int, then: int | None
    ) -> int | _Unread | None:
        """``app_id``'s transaction version at ``version``, from what it was at ``since`` and the commits
        after it; unread when a commit file cannot be read (cleaned up past a checkpoint)."""
        files = self.files(table)
        answer = then
        for commit in range(since + 1, version + 1):
            actions = _commit_actions(files, commit)
            if actions is None:
                return _UNREAD
            for action in actions:
                txn = action.get("txn")
                if txn is not None and txn.get("appId") == app_id:
                    answer = int(txn["version"])
        return answer

    def append_once(
        self, table: TableDef, data: pa.Table, *, app_id: str, version: int, start: int | None = None
    ) -> bool:
        """Append ``data`` unless ``app_id`` already committed ``version`` (or a later one).

        ``data`` covers source positions ``(start, version]``. A batch that overlaps what was committed
        without being covered by it would be half duplicated, so it is refused.

        Returns:
            True when this call committed, False when the data was already there.
        """

        def write() -> None:
            self._append(table, data, [Transaction(app_id, version)])

        check = _no_overlap(table, app_id, start, version)
        return self._commit_once(table, app_id, version, write, check=check, verb="write")

    def append_positions_once(
        self,
        table: TableDef,
        data: pa.Table,
        *,
        ends: Mapping[str, tuple[str, int]],
        metadata: Mapping[str, str] | None = None,
    ) -> PositionedAppend:
        """Append the rows of ``data`` that no earlier commit holds, for several sources in one commit.

        ``ends`` maps each ``source`` value of ``data`` to ``(app_id, last position read)``; rows carry
        their position in ``source_offset``. Just before committing, the positions stored for those app
        ids are read again and rows at or below them are dropped (another writer, e.g. a consumer that
        held the partition before a rebalance, already committed them), so nothing is written twice; a
        concurrent commit of the same app id makes Delta refuse ours, and the check is redone.
        """

        def attempt() -> PositionedAppend:
            stored = {source: self.txn_version(table, app_id) for source, (app_id, _) in ends.items()}
            fresh = _after_positions(data, stored)
            advancing = [
                Transaction(app_id, end)
                for source, (app_id, end) in ends.items()
                if stored[source] is None or end > stored[source]  # type: ignore[operator]
            ]
            if advancing:
                self._append(table, fresh, advancing, metadata=metadata)
            return PositionedAppend(fresh, stored)

        return self._until_accepted(table, "write", attempt)

    def add_files_once(
        self,
        table: TableDef,
        actions: Sequence[AddAction],
        *,
        app_id: str,
        version: int,
        start: int | None = None,
    ) -> bool:
        """Add Parquet files already written under the table's directory (by other processes, e.g. Spark
        executors) in one commit with ``(app_id, version)``, unless that version is committed; the same
        checks as :meth:`append_once`. True when this call committed."""

        def commit() -> None:
            self.ensure(table).create_write_transaction(
                list(actions),
                mode="append",
                schema=table.schema,
                partition_by=list(table.partition_by) or None,
                commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)]),
            )

        check = _no_overlap(table, app_id, start, version)
        return self._commit_once(table, app_id, version, commit, check=check, verb="add files to")

    def _commit_once(
        self,
        table: TableDef,
        app_id: str,
        version: int,
        write: Callable[[], None],
        *,
        check: Callable[[int | None], None] | None = None,
        verb: str,
    ) -> bool:
        """Run ``write`` unless ``app_id`` already committed ``version`` to ``table``; True when it ran.

        The check and the write race with other writers of the same ``app_id``: Delta refuses the second
        commit (``CommitFailedError``), so on a conflict re-read the version and retry only if still needed.
        """

        def attempt() -> bool:
            done = self.txn_version(table, app_id)
            if done is not None and done >= version:
                return False
            if check is not None:
                check(done)
            write()
            return True

        return self._until_accepted(table, verb, attempt)

    def _until_accepted(self, table: TableDef, verb: str, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` (which re-reads what it depends on) until Delta accepts its commit."""
        for n in range(_COMMIT_ATTEMPTS):
            try:
                return attempt()
            except CommitFailedError:
                time.sleep(0.05 * 2**n)
            except (DeltaError, OSError) as exc:
                raise LakeError(f"cannot {verb} {table.name}: {exc}") from exc
        raise CommitConflict(f"{table.name}: {verb} kept conflicting after {_COMMIT_ATTEMPTS} attempts")

    def dataset(
        self, table: TableDef, *, version: int | None = None, only: Collection[str] | None = None
    ) -> ds.Dataset:
        """The table's current files as a pyarrow dataset (for DuckDB, with filter and partition pushdown);
        with ``only``, just those of its files (their paths as the Delta log's add actions give them).

        ``DeltaTable.to_pyarrow_dataset()`` spends ~4 ms per file in Python on this machine (0.8 s for a
        200-file silver table), which dominated small pipeline runs; the file list from the Delta log plus
        hive-style partition parsing gives the same dataset in well under a millisecond. Tables we write
        use neither deletion vectors nor column mapping, so the files are the whole truth.
        """
        delta = self._at(table, version)
        if delta is None:
            return ds.dataset(table.schema.empty_table())
        uris = delta.file_uris()
        if only is not None:
            wanted = {unquote(path) for path in only}
            uris = [uri for uri in uris if unquote(_relative(uri, self.table_uri(table))) in wanted]
        partitioning = ds.partitioning(
            pa.schema([table.schema.field(name) for name in table.partition_by]), flavor="hive"
        )
        if self.is_local:
            return ds.dataset(
                uris,
                schema=table.schema,
                format="parquet",
                partitioning=partitioning,
                partition_base_dir=self.table_uri(table),
            )
        # An object store: the same dataset as on local disk (the contract's schema, hive partitions),
        # read through delta-rs's own file system (its credentials and endpoint).
        root = self.table_uri(table).rstrip("/") + "/"
        return ds.dataset(
            [uri.removeprefix(root) for uri in uris],
            schema=table.schema,
            format="parquet",
            filesystem=self.files(table),
            partitioning=partitioning,
        )

    def files(self, table: TableDef) -> fs.FileSystem:
        """The table's directory as a pyarrow file system (paths relative to it), on any store."""
        root = self.table_uri(table).rstrip("/") + "/"
        return fs.PyFileSystem(DeltaStorageHandler(root, self.storage_options or None))

    def local_files(
        self,
        table: TableDef,
        *,
        where: tuple[str, Sequence[object]] | None = None,
        version: int | None = None,
    ) -> list[str] | None:
        """Paths of the table's data files (current, or at ``version``), for DuckDB's own Parquet reader
        (None for object stores). ``where=(column, values)`` keeps the files of those partitions only."""
        if not self.is_local:
            return None
        delta = self._at(table, version)
        files = [] if delta is None else [uri.removeprefix("file://") for uri in delta.file_uris()]
        if where is not None:
            column, values = where
            segments = {f"/{column}={partition_text(value)}/" for value in values}
            files = [f for f in files if any(segment in f for segment in segments)]
        return files

    def _at(self, table: TableDef, version: int | None) -> DeltaTable | None:
        """The table at ``version`` (None: the latest), or None when it has not been written yet."""
        delta = self.open(table)
        if delta is None or version is None or version == delta.version():
            return delta
        if not 0 <= version <= delta.version():
            raise LakeError(f"{table.name} has versions 0 to {delta.version()}, not {version}")
        return DeltaTable(
            self.table_uri(table), version=version, storage_options=self.storage_options or None
        )

    def version_at(self, table: TableDef, when: datetime) -> int:
        """The table's version as of ``when`` (Delta ``TIMESTAMP AS OF``): the last commit at or before it."""
        delta = self.open(table)
        if delta is None:
            raise LakeError(f"{table.name} has not been written yet")
        as_of = DeltaTable(self.table_uri(table), storage_options=self.storage_options or None)
        try:
            as_of.load_as_version(when)
        except (DeltaError, ValueError) as exc:
            raise LakeError(f"{table.name} has no version as of {when.isoformat()}: {exc}") from exc
        return int(as_of.version())

    def append(self, table: TableDef, data: pa.Table) -> None:
        """A plain append (logs and history rows that need no exactly-once guarantee)."""
        try:
            write_deltalake(
                self.ensure(table),
                data.cast(table.schema),
                mode="append",
                schema_mode="merge",  # a contract that gained a column adds it to the stored schema
                writer_properties=delta_writer_properties(table),
            )
        except (DeltaError, OSError) as exc:
            raise LakeError(f"cannot write {table.name}: {exc}") from exc

    def replace_once(self, table: TableDef, data: pa.Table, *, app_id: str, version: int) -> None:
        """Overwrite ``table`` with ``data`` and record ``(app_id, version)``, which may be lower than before.

        Used to reset derived tables (a full refresh starts again from version -1). The table is opened
        at its latest version first: an overwrite from a handle that missed commits made through another
        (the first build's direct writes) is refused by Delta as a conflict.
        """
        try:
            write_deltalake(
                self.open(table) or self.ensure(table),
                data.cast(table.schema),
                mode="overwrite",
                schema_mode="overwrite",  # a contract that gained a column replaces the stored schema
                writer_properties=delta_writer_properties(table),
                commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)]),
            )
        except (DeltaError, OSError) as exc:
            raise LakeError(f"cannot overwrite {table.name}: {exc}") from exc

    def upsert_once(
        self,
        table: TableDef,
        source: pa.Table,
        *,
        keys: tuple[str, ...],
        app_id: str,
        version: int,
        delete_flag: str | None = None,
    ) -> bool:
        """MERGE ``source`` into ``table`` on ``keys`` unless ``app_id`` already committed ``version``.

        Rows whose values did not change are left alone (no rewrite, ``updated_at`` kept). With
        ``delete_flag``, source rows flagged true delete their match instead. A MERGE that changes nothing
        makes no Delta commit, so the version is then recorded with an empty append; so is an empty
        ``source``, without reading the table (a range of canary events only folds no job).
        """

        def merge() -> None:
            delta = self.ensure(table)
            if source.num_rows == 0:  # a MERGE of nothing would still scan every file (no partition named)
                self._append(table, table.schema.empty_table(), [Transaction(app_id, version)])
                return
            before = delta.version()
            _merge(delta, table, source, keys=keys, delete_flag=delete_flag, app_id=app_id, version=version)
            delta.update_incremental()
            if delta.version() == before:
                self._append(table, table.schema.empty_table(), [Transaction(app_id, version)])

        return self._commit_once(table, app_id, version, merge, verb="merge into")

    def delete_matching(
        self, table: TableDef, source: pa.Table, predicate: str, *, partitions: pa.Table | None = None
    ) -> dict[str, int]:
        """Delete the rows of ``table`` that match a row of ``source`` by ``predicate`` (a MERGE: ``t.`` is
        the table, ``s.`` the source, so values stay bound data), in the ``partitions`` named (a table of
        partition values; see :func:`_partition_filter`) or in the whole table. Only the files holding
        matching rows are rewritten, in the table's own file format. Returns delta-rs's MERGE metrics;
        a racing commit makes Delta refuse it (``CommitFailedError``)."""
        delta = self.open(table)
        if delta is None:
            return {}
        scope = [] if partitions is None else _partition_filter(table, partitions)
        metrics = (
            delta.merge(
                source,
                predicate=" AND ".join([predicate, *scope]),
                source_alias="s",
                target_alias="t",
                writer_properties=delta_writer_properties(table),
            )
            .when_matched_delete()
            .execute()
        )
        return {name: int(value) for name, value in metrics.items()}

    def ensure(self, table: TableDef) -> DeltaTable:
        """Open ``table``, creating it empty (with its contract's schema) when it does not exist yet."""
        existing = self._handles.get(table.name) or self.open(table)
        if existing is not None:
            return self._with_added_columns(table, existing)
        try:
            self._handles[table.name] = DeltaTable.create(
                self.table_uri(table),
                table.schema,
                mode="error",
                partition_by=list(table.partition_by) or None,
                name=table.name,
                description=table.description,
                configuration=table.configuration or None,
                storage_options=self.storage_options or None,
                commit_properties=CommitProperties(max_commit_retries=0),
            )
            return self._handles[table.name]
        except (DeltaError, OSError) as exc:
            # Another writer created it first (two processes on a fresh lake): use theirs. No retry: delta-rs
            # would commit a create that lost version 0 again as version 1, a second table id.
            created = self.open(table)
            if created is not None:
                return created
            raise LakeError(f"cannot create {table.name} at {self.table_uri(table)}: {exc}") from exc

    def _with_added_columns(self, table: TableDef, delta: DeltaTable) -> DeltaTable:
        """``delta``, with the columns its contract gained since it was created added to its schema.

        Appends commit files written by pyarrow with the contract's schema, and Delta keeps the table's
        stored schema on such commits: a column the stored schema lacks would be in the files and
        invisible to every reader. Checked once per table and lake object."""
        if not table.added_columns or table.name in self._schema_checked:
            return delta
        stored = {field.name for field in delta.schema().fields}
        missing = [f for f in table.schema if f.name in table.added_columns and f.name not in stored]
        if missing:
            try:
                delta.alter.add_columns(Schema.from_arrow(pa.schema(missing)).fields)
            except DeltaError:  # another writer added them first
                delta.update_incremental()
                stored = {field.name for field in delta.schema().fields}
                if any(f.name not in stored for f in missing):
                    raise
        self._schema_checked.add(table.name)
        return delta

    def _append(
        self,
        table: TableDef,
        data: pa.Table,
        transactions: list[Transaction],
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Append ``data`` and record ``transactions`` (and commit ``metadata``) in the same commit.

        On a local lake the files are written by pyarrow (lake/partition_files.py: the same encoding, in
        ~60% of delta-rs's time) and added in the commit; a failed commit leaves them unreferenced, as
        delta-rs's own writes would be, for ``VACUUM``."""
        properties = CommitProperties(
            app_transactions=transactions, custom_metadata=dict(metadata or {}) or None
        )
        if self.is_local:
            added: list[AddAction | RemoveAction] = [*write_files(Path(self.table_uri(table)), table, data)]
            delta = self.ensure(table)
            delta.create_write_transaction(
                added,
                mode="append",
                schema=table.schema,
                partition_by=list(table.partition_by) or None,
                commit_properties=properties,
            )
            delta.update_incremental()  # as write_deltalake leaves its handle: at the commit just made
            return
        write_deltalake(
            self.ensure(table),
            data.cast(table.schema),
            mode="append",
            writer_properties=delta_writer_properties(table),
            storage_options=self.storage_options or None,
            commit_properties=properties,
        )


@dataclass(frozen=True)
class PositionedAppend:
    """What :meth:`Lake.append_positions_once` wrote, and the positions stored before it (None: none)."""

    written: pa.Table
    stored_before: dict[str, int | None]


def _after_positions(data: pa.Table, stored: Mapping[str, int | None]) -> pa.Table:
    """The rows of ``data`` past the position stored for their ``source`` (all of them when none is)."""
    floor = pa.array([-1 if stored[s] is None else stored[s] for s in stored], pa.int64())
    sources = pa.array(list(stored), pa.string())
    position = pc.index_in(data["source"], value_set=sources)
    return data.filter(pc.greater(data["source_offset"], pc.take(floor, position)))


def _commit_actions(files: fs.FileSystem, version: int) -> list[dict[str, Any]] | None:
    """The actions of commit ``version`` from its file in ``_delta_log``; None when it is gone."""
    try:
        with files.open_input_stream(f"_delta_log/{version:020d}.json") as stream:
            lines = stream.read().decode().splitlines()
    except (OSError, DeltaError):
        return None
    return [json.loads(line) for line in lines if line.strip()]


def _commit_info(actions: list[dict[str, Any]]) -> dict[str, Any]:
    """A commit's ``commitInfo``; when it has no ``operationMetrics.num_added_rows`` (a commit of files
    written beside delta-rs, ``create_write_transaction``, records none), the rows its add actions' stats
    count, so that every append says how many rows it added."""
    info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
    metrics = info.get("operationMetrics") or {}
    if "num_added_rows" in metrics:
        return info
    adds = [a["add"] for a in actions if "add" in a]
    stats = [json.loads(add["stats"]) if add.get("stats") else {} for add in adds]
    if not adds or any("numRecords" not in s for s in stats):
        return info
    return {**info, "operationMetrics": {**metrics, "num_added_rows": sum(s["numRecords"] for s in stats)}}


def _relative(uri: str, table_uri: str) -> str:
    """A data file's path inside its table, from its URI."""
    return uri.removeprefix("file://").split(table_uri.removeprefix("file://").rstrip("/") + "/", 1)[-1]


def _next_commit(table_uri: str, version: int) -> Path:
    """Where commit ``version + 1`` of a local table would be: versions are contiguous, so while that
    file is missing the table has not changed (one stat instead of listing the log, ~3 ms)."""
    return Path(table_uri) / "_delta_log" / f"{version + 1:020d}.json"


def _partition_filter(table: TableDef, source: pa.Table) -> list[str]:
    """Conditions naming the target partitions the source can match, so the MERGE reads only those.

    delta-rs does not prune target files from the join keys alone (measured: a 80k-row MERGE into a
    5M-row silver took 11 s scanning every file, 0.36 s with the partition named). The merge predicate is
    a string, so only date and integer partition values are written into it, rendered from typed values
    (never text that came from the data); a column with NULLs in the source (delete markers that carry
    only keys) is not used.
    """
    conditions = []
    for name in table.partition_by:
        if name not in source.column_names or source[name].null_count:
            continue
        column = source[name]
        if pa.types.is_date32(column.type):
            values = [f"DATE '{value.isoformat()}'" for value in pc.unique(column).to_pylist()]
        elif pa.types.is_integer(column.type):
            values = [str(int(value)) for value in pc.unique(column).to_pylist()]
        else:
            continue
        if values:
            conditions.append(f"t.{name} IN ({', '.join(values)})")
    return conditions


def _merge(
    delta: DeltaTable,
    table: TableDef,
    source: pa.Table,
    *,
    keys: tuple[str, ...],
    delete_flag: str | None,
    app_id: str,
    version: int,
) -> None:
    """Build and run the MERGE; only column names (from the contract) are written into its predicates."""
    columns = table.schema.names
    match = " AND ".join([f"t.{k} = s.{k}" for k in keys] + _partition_filter(table, source))
    changed = "NOT (" + " AND ".join(_unchanged(f) for f in table.schema if f.name != "updated_at") + ")"
    keep = "true" if delete_flag is None else f"NOT s.{delete_flag}"
    merger = delta.merge(
        source,
        predicate=match,
        source_alias="s",
        target_alias="t",
        writer_properties=delta_writer_properties(table),
        commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)]),
    )
    if delete_flag is not None:
        merger = merger.when_matched_delete(predicate=f"s.{delete_flag}")
    if set(columns) <= set(source.column_names):  # otherwise a delete-only source (keys + flag)
        updates = {c: f"s.{c}" for c in columns}
        merger = merger.when_matched_update(updates, predicate=f"{keep} AND {changed}")
        merger = merger.when_not_matched_insert(updates, predicate=keep)
    merger.execute()


def _unchanged(column: pa.Field) -> str:
    """The MERGE condition that ``column`` holds the same value in the target and the source. A map is
    compared by its keys and its values (the engine cannot compare maps whole): a job folded again may
    change its error counts and nothing else, and must still be rewritten."""
    name = column.name
    if pa.types.is_map(column.type):
        return " AND ".join(
            f"({part}(t.{name}) IS NOT DISTINCT FROM {part}(s.{name}))" for part in ("map_keys", "map_values")
        )
    return f"(t.{name} IS NOT DISTINCT FROM s.{name})"  # lists too


def no_such_partition(exc: DeltaError) -> bool:
    """Whether delta-rs refused a partition filter because no such partition exists (yet)."""
    return "partition" in str(exc).lower()


def _no_overlap(
    table: TableDef, app_id: str, start: int | None, version: int
) -> Callable[[int | None], None]:
    """The check that a batch covering source positions ``(start, version]`` does not overlap the position
    ``app_id`` already committed: such a batch would be half duplicated, so it is refused."""

    def check(done: int | None) -> None:
        if done is not None and start is not None and start < done:
            raise LakeError(
                f"{table.name}: batch ({start}, {version}] of {app_id} overlaps the committed "
                f"position {done}; refusing to write duplicates"
            )

    return check


def merge_source(table: TableDef, upserts: pa.Table, deletions: pa.Table) -> pa.Table:
    """``upserts`` and ``deletions`` (which need only the key columns) in one table flagged by ``_deleted``:
    the ``source`` of :meth:`Lake.upsert_once` with ``delete_flag="_deleted"``."""
    schema = pa.schema([f.with_nullable(True) for f in table.schema] + [pa.field("_deleted", pa.bool_())])
    count = deletions.num_rows
    markers = pa.table(
        {
            f.name: deletions[f.name] if f.name in deletions.column_names else pa.nulls(count, f.type)
            for f in table.schema
        }
        | {"_deleted": pa.repeat(pa.scalar(True), count)}
    )
    rows = upserts.append_column("_deleted", pa.repeat(pa.scalar(False), upserts.num_rows))
    return pa.concat_tables([rows.cast(schema), markers.cast(schema)])
