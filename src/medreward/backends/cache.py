"""The persistent response cache: SQLite in WAL mode, shared by threads, worker processes and
concurrent runs.

One row per :meth:`ChatRequest.cache_key` (sha256 of backend kind + model + canonical request).
A hit makes no call. Only complete, successful responses are stored (the backend decides that);
each ``put`` is one ``INSERT OR REPLACE`` transaction, so a process killed mid-write leaves the
previous state: a readable cache with no torn entry.

Durability choice: ``journal_mode=WAL`` with ``synchronous=NORMAL``. In WAL mode NORMAL keeps the
database consistent after an application crash (``kill -9``: the WAL frames written so far are
in the OS page cache and a commit is atomic); it only skips the fsync on each commit, so a power
loss may drop the last few commits. For a cache that loss costs a repeated call, never a wrong
answer, and FULL would fsync once per judge verdict. ``busy_timeout`` makes concurrent writers
from other processes wait for the lock instead of failing.

The contract is in ``docs/contracts.md#model-backed-rewards``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MedrewardError
from .base import ChatResponse

__all__ = [
    "CacheError",
    "CacheStats",
    "SQLiteCache",
    "default_cache_path",
    "open_cache",
    "remove_cache_files",
]

log = logging.getLogger(__name__)

#: the schema this code writes; a file with a higher ``user_version`` was made by a newer medreward
SCHEMA_VERSION = 1
#: seconds a writer waits for another process's lock before giving up
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    created REAL NOT NULL,
    kind    TEXT NOT NULL,
    model   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created);
"""


class CacheError(MedrewardError):
    """The response cache file cannot be opened, read or written; the message names the path."""


@dataclass(frozen=True)
class CacheStats:
    """What ``medreward cache stats`` shows. Times are Unix seconds (``None`` when empty);
    ``size_bytes`` counts the database and its ``-wal``/``-shm`` files."""

    path: Path
    entries: int
    size_bytes: int
    by_backend: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, model) -> entries
    oldest: float | None = None
    newest: float | None = None


def default_cache_path() -> Path:
    """``$MEDREWARD_CACHE`` if set, else ``$XDG_CACHE_HOME/medreward/responses.sqlite`` (by default
    ``~/.cache/medreward/responses.sqlite``)."""
    explicit = os.environ.get("MEDREWARD_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "medreward" / "responses.sqlite"


def open_cache(path: str | os.PathLike[str] | None, enabled: bool = True) -> SQLiteCache | None:
    """The cache at ``path`` (or :func:`default_cache_path`), or ``None`` when disabled
    (``--no-cache``). Raises :class:`CacheError` when the file is unusable."""
    if not enabled:
        return None
    return SQLiteCache(default_cache_path() if path is None else path)


def remove_cache_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the cache file and its ``-wal``/``-shm`` companions (e.g. a corrupt cache); the
    paths removed."""
    removed = []
    base = Path(path).expanduser()
    for candidate in (base, Path(f"{base}-wal"), Path(f"{base}-shm"), Path(f"{base}-journal")):
        try:
            candidate.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CacheError(f"cannot remove {candidate}: {exc.strerror or exc}") from None
        removed.append(candidate)
    return removed


class SQLiteCache:
    """A :class:`~medreward.backends.base.ResponseCache` in one SQLite file.

    Thread-safe: each thread uses its own connection (sqlite3 connections must not be shared
    between threads); WAL lets readers proceed while one writer commits. Picklable by path: a
    worker process re-opens the file. Opening validates the file, so a corrupt or foreign cache
    fails at start-up with a :class:`CacheError`, not in the middle of a batch.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the cache folder {self.path.parent}: {exc.strerror or exc}") from None
        if self.path.is_dir():
            raise CacheError(f"cache path {self.path} is a directory: give a file such as {self.path / 'responses.sqlite'}")
        self._connection()  # validate now

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self.path),))

    def __repr__(self) -> str:
        return f"SQLiteCache({str(self.path)!r})"

    # -- connections -------------------------------------------------------------------------

    def _fail(self, action: str, exc: BaseException) -> CacheError:
        return CacheError(
            f"response cache {self.path} cannot be {action} ({exc}); "
            f"remove it with `medreward cache clear --cache {self.path}` or run with --no-cache"
        )

    def _connection(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            # forked child: the parent's connections must not be used here
            self._local = threading.local()
            self._connections = []
            self._lock = threading.Lock()
            self._pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
            # lock up front (waiting on busy_timeout) instead of failing on a lock upgrade
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._fail("opened", exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CacheError(
                    f"response cache {self.path} was written by a newer medreward (schema {version}); "
                    "upgrade medreward, or use another --cache"
                )
            if version == 0:
                self._initialise(conn)
            # WAL persists in the file once set; asking again is a cheap no-op
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("response cache %s: journal mode is %s, not wal", self.path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
        except CacheError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise self._fail("read", exc) from None
        return conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        """Create the schema (once; concurrent openers serialise on the write lock)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables - {"responses"}:
                    raise CacheError(
                        f"{self.path} is an SQLite database but not a medreward response cache "
                        f"(it has tables {sorted(tables)}); give another --cache"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- the ResponseCache protocol ----------------------------------------------------------

    def get(self, key: str) -> ChatResponse | None:
        """The stored response for ``key`` with ``cached=True``, or ``None``."""
        try:
            row = self._connection().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None
        if row is None:
            return None
        try:
            data = json.loads(row[0])
            data["cached"] = True
            return ChatResponse.from_json(data)
        except (ValueError, TypeError, KeyError) as exc:
            # a row from an incompatible version: a miss, so the call is made and the row replaced
            log.warning("response cache %s: entry %s unreadable (%s); treating it as a miss", self.path, key[:12], exc)
            return None

    def put(self, key: str, response: ChatResponse, *, kind: str = "") -> None:
        """Store ``response`` under ``key`` in one transaction (replacing an older entry).
        ``kind`` (the backend kind) only feeds :meth:`stats`; it is already part of ``key``."""
        data = response.to_json()
        data.pop("cached", None)
        value = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO responses (key, value, created, kind, model) VALUES (?, ?, ?, ?, ?)",
                    (key, value, time.time(), kind, response.model),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail("written", exc) from None

    def delete(self, key: str) -> None:
        """Remove the entry under ``key`` (none: nothing happens), in one transaction."""
        try:  # autocommit connection: one statement is one transaction
            self._connection().execute("DELETE FROM responses WHERE key = ?", (key,))
        except sqlite3.Error as exc:
            raise self._fail("written", exc) from None

    def close(self) -> None:
        """Close every thread's connection (a later use re-opens)."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:  # closing is best effort
                pass

    def __enter__(self) -> SQLiteCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- maintenance -------------------------------------------------------------------------

    def __len__(self) -> int:
        try:
            return int(self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None

    def stats(self) -> CacheStats:
        """Entries, size on disk, entries per (backend kind, model), oldest and newest entry."""
        conn = self._connection()
        try:
            entries, oldest, newest = conn.execute("SELECT COUNT(*), MIN(created), MAX(created) FROM responses").fetchone()
            by_backend = {
                (kind, model): count
                for kind, model, count in conn.execute(
                    "SELECT kind, model, COUNT(*) FROM responses GROUP BY kind, model ORDER BY COUNT(*) DESC, kind, model"
                )
            }
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")) if p.exists())
        return CacheStats(self.path, int(entries), size, by_backend, oldest, newest)

    def clear(self, older_than: float | None = None) -> int:
        """Delete every entry, or those created more than ``older_than`` seconds ago; the number
        deleted. Clearing everything also shrinks the file (VACUUM)."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if older_than is None:
                    deleted = conn.execute("DELETE FROM responses").rowcount
                else:
                    cutoff = time.time() - older_than
                    deleted = conn.execute("DELETE FROM responses WHERE created < ?", (cutoff,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if older_than is None:
                conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise self._fail("cleared", exc) from None
        return int(deleted)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` ("ok" for a sound file)."""
        try:
            rows = self._connection().execute("PRAGMA integrity_check").fetchall()
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None
        return "\n".join(str(r[0]) for r in rows)
