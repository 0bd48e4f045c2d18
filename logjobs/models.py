"""The status database: Peewee models behind a proxy, bound to SQLite or any database URL at run
time.

Only the mirror writes here. Nothing opens a connection at import time, so forking workers never
inherit one.
"""

import contextlib
import datetime
import functools
import math
import os

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DatabaseError,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    ImproperlyConfigured,
    IntegerField,
    Model,
    PeeweeException,
    SqliteDatabase,
    TextField,
)
from playhouse.db_url import connect as connect_url
from playhouse.migrate import SchemaMigrator, migrate

from . import fastjson
from .exceptions import ConfigError, ConnectionFailed, NoDatabase
from .settings import redact_url

db = DatabaseProxy()

#: Per-connection SQLite settings: WAL lets readers (status, report, dashboard) run beside the
#: writer.
SQLITE_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1}
SQLITE_TIMEOUT = 30  # seconds a reader or writer waits for a lock
#: The writer's transactions take the write lock as they begin, waiting up to SQLITE_TIMEOUT for it.
#: A transaction begun as a reader (the mirror reads the rows it updates) cannot wait to become a
#: writer when another connection writes: SQLite fails it at once with "database is locked".
SQLITE_OPTIONS = {"pragmas": SQLITE_PRAGMAS, "timeout": SQLITE_TIMEOUT, "lock_type": "IMMEDIATE"}


class BaseModel(Model):
    class Meta:
        database = db


class Scan(BaseModel):
    """One row per pushed file: its latest scan's state, counts and failure reason (the sum of its
    parts)."""

    path = TextField(unique=True)
    job_id = CharField(index=True)
    queue = CharField(index=True)
    status = CharField(index=True)
    patterns = TextField()  # JSON list
    counts = TextField(null=True)  # JSON object: pattern -> matching lines
    lines = BigIntegerField(null=True)
    bytes = BigIntegerField(null=True)
    compression = CharField(null=True)
    tail = BooleanField(default=False)  # its last line had no "\n" yet (see scanner.ScanResult)
    scanned = BigIntegerField(null=True)  # bytes the latest scan read: all, or what was appended
    identity = TextField(null=True)  # JSON tracking.Identity of the file when pushed
    moved_to = TextField(null=True)  # status `moved`: the name the file (and its counts) went to
    levels = TextField(null=True)  # JSON object: normalised level -> lines (see analysis)
    analysis = TextField(null=True)  # JSON analysis.Analysis: levels, top messages, minutes
    error = TextField(null=True)
    attempts = IntegerField(default=0)  # runs started
    worker = CharField(null=True)
    enqueued_at = DateTimeField()
    started_at = DateTimeField(null=True)
    ended_at = DateTimeField(null=True)
    updated_at = DateTimeField()
    parts = IntegerField(default=1)  # byte ranges the file was split into
    # JSON list, one object per part: its job id, state, attempt, the order of the last event
    # applied to it (see events.Event.order: older ones are stale), result, error, times.
    part_states = TextField()
    ignore_case = BooleanField(default=False)  # its patterns matched whatever the case (grep -i)
    format = CharField(null=True)  # the log format its lines were read with (see formats)

    class Meta:
        table_name = "scans"

    def to_dict(self):
        """The row as `report --json` shows it; it reads only the columns `reported()` selects."""
        return {
            "path": self.path,
            "status": self.status,
            "counts": fastjson.loads(self.counts) if self.counts else {},
            "error": self.error,
            "attempts": self.attempts,
            "queue": self.queue,
            "job_id": self.job_id,
            "patterns": fastjson.loads(self.patterns),
            "ignore_case": bool(self.ignore_case),
            "format": self.format,
            "parts": self.parts,
            "lines": self.lines,
            "bytes": self.bytes,
            "compression": self.compression,
            "levels": fastjson.loads(self.levels) if self.levels else {},
            "scanned": self.scanned,
            "moved_to": self.moved_to,
            "worker": self.worker,
            "enqueued_at": isoformat(self.enqueued_at),
            "started_at": isoformat(self.started_at),
            "ended_at": isoformat(self.ended_at),
        }

    @classmethod
    def reported(cls, *more):
        """A query of the columns to_dict() reads (and `more`): not the analysis, often most of a
        row."""
        return cls.select(
            cls.path,
            cls.status,
            cls.counts,
            cls.error,
            cls.attempts,
            cls.queue,
            cls.job_id,
            cls.patterns,
            cls.parts,
            cls.lines,
            cls.bytes,
            cls.compression,
            cls.levels,
            cls.scanned,
            cls.moved_to,
            cls.worker,
            cls.enqueued_at,
            cls.started_at,
            cls.ended_at,
            cls.ignore_case,
            cls.format,
            *more,
        )


class History(BaseModel):
    """Every state change applied, one row per stream entry: a job's attempts, for the record."""

    stream_id = CharField(unique=True)
    job_id = CharField(index=True)
    path = TextField(index=True)
    part = IntegerField(default=0)
    queue = CharField()
    state = CharField(index=True)
    attempt = IntegerField()
    worker = CharField(null=True)
    error = TextField(null=True)
    at = DateTimeField(index=True)
    duration = FloatField(null=True)  # s, on `finished`: how long the part's scan took
    counts = TextField(null=True)  # JSON, on `finished`: the part's matching lines per pattern
    # False for an event that came too late to change the row (an older attempt, a superseded scan):
    # kept for the record, left out of every count.
    applied = BooleanField(default=True)

    class Meta:
        table_name = "history"


MODELS = (Scan, History)


def open_database(target, create=True):
    """Bind the models to `target` (a SQLite path or a database URL) and return the database.

    Only the writer (`create`) makes the tables, or the file; a reader of a database without them
    gets NoDatabase."""
    if not create:
        require_file(target)
    shown = redact_url(target)
    try:
        if "://" in target:
            database = connect_url(
                target, **(SQLITE_OPTIONS if target.startswith("sqlite") else {})
            )
        else:
            database = SqliteDatabase(target, **SQLITE_OPTIONS)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"bad status database {shown!r}: {exc}") from None
    db.initialize(database)
    try:
        database.connect(reuse_if_open=True)
        if create:
            database.create_tables(MODELS, safe=True)
            _add_missing_columns(database)
        elif not database.table_exists(Scan._meta.table_name):
            raise NoDatabase(
                f"the status database {shown} has no tables yet: run `logjobs mirror` first"
            )
        elif any(
            _missing_columns(database, m)
            for m in MODELS
            if database.table_exists(m._meta.table_name)
        ):
            raise ConfigError(
                f"the status database {shown} was made by an older logjobs: run `logjobs mirror "
                "--once` (the one writer) to add the new columns"
            )
    except (DatabaseError, ImproperlyConfigured) as exc:  # not a database, unreachable, refused...
        raise ConnectionFailed(
            f"cannot open status database {shown}: {database_reason(exc, target)}"
        ) from None
    return database


@contextlib.contextmanager
def transaction():
    """db.atomic(), raising the error that ended the transaction. SQLite rolls a transaction back by
    itself on some errors (the disk full: SQLITE_FULL), and Peewee's own rollback then fails with
    "cannot rollback - no transaction is active", which would hide why."""
    atomic = db.atomic()
    atomic.__enter__()
    try:
        yield
    except BaseException as exc:
        try:
            atomic.__exit__(type(exc), exc, exc.__traceback__)
        except PeeweeException:
            raise exc from None
        raise
    try:
        atomic.__exit__(None, None, None)
    except PeeweeException as exc:
        cause = exc.__context__
        if "no transaction is active" in str(exc) and isinstance(cause, PeeweeException):
            raise cause from None
        raise


def require_file(target):
    """Raise NoDatabase if `target` is a SQLite path with no file: a reader's connection would make
    an empty one (before the mirror's first start, or after the file was deleted)."""
    if "://" not in target and not os.path.exists(target):
        raise NoDatabase(
            f"no status database at {target}: run `logjobs mirror` first (or set LOGJOBS_DB)"
        )


def database_reason(exc, target):
    """The first line of a database error, without the password of `target` that it may quote."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].replace(
        target, redact_url(target)
    )


def _add_missing_columns(database):
    """Bring a database made by an older logjobs up to date: new columns are added, never
    changed."""
    migrator = SchemaMigrator.from_database(database)
    for model in MODELS:
        missing = _missing_columns(database, model)
        if missing:
            migrate(
                *(migrator.add_column(model._meta.table_name, f.column_name, f) for f in missing)
            )


def _missing_columns(database, model):
    have = {c.name for c in database.get_columns(model._meta.table_name)}
    return [f for f in model._meta.sorted_fields if f.column_name not in have]


def utc(timestamp):
    """A naive UTC datetime for a Unix timestamp (the form every backend stores alike)."""
    return _EPOCH + datetime.timedelta(seconds=timestamp)  # as fromtimestamp(), in half the time


_EPOCH = datetime.datetime(1970, 1, 1)


def stored_utc(database):
    """The quickest way to what `database` stores in a DateTimeField for utc(timestamp), for a
    writer that binds values itself (the mirror). The driver takes a datetime, but SQLite's calls
    sqlite3's adapter for each one, which formats it as text: a tenth of the mirror's time. So for
    SQLite this is that text, made without a datetime (see _sqlite_utc); for other drivers, utc()
    itself."""
    return _sqlite_utc if isinstance(database, SqliteDatabase) else utc


def _sqlite_utc(timestamp):
    """utc(timestamp).isoformat(" "), as sqlite3 stores a datetime (and Peewee reads it back),
    rounded to the microsecond as timedelta() rounds: half to even."""
    seconds = math.floor(timestamp)
    micro = round((timestamp - seconds) * 1e6)
    if micro == 1_000_000:
        seconds, micro = seconds + 1, 0
    text = _utc_second(seconds)
    return f"{text}.{micro:06d}" if micro else text


@functools.lru_cache(maxsize=4096)
def _utc_second(seconds):
    return utc(seconds).isoformat(" ")


def isoformat(value):
    return value.isoformat(timespec="milliseconds") + "Z" if value else None
