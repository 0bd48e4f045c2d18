"""How the mirror reads and writes the rows it applies events to: a fast path, and Peewee's plain
one.

The mirror writes thousands of rows a second. Peewee builds a statement value by value, at several
microseconds each, and converts every field both ways: more than the database takes to run it. So
`FastRows` builds each statement once per database, binds the driver's own values (read as they are,
written back as they were, but for the fields the mirror sets), and reads and writes whole batches.
`PeeweeRows` does the same through Peewee's query API, for the tests, which check that both leave
the same tables. Both take and give `Row`s and history entries (dicts of History's columns).
"""

import contextlib
import dataclasses
import operator

import peewee

from .models import History, Scan, db


@dataclasses.dataclass(slots=True)
class Row:
    """A file's row of the scans table, with the driver's own values (times as models.stored_utc
    makes them, JSON as text). Its fields are Scan's columns but `id`, in the table's order."""

    path: str
    job_id: str | None = None
    queue: str | None = None
    status: str | None = None
    patterns: str | None = None
    counts: str | None = None
    lines: int | None = None
    bytes: int | None = None
    compression: str | None = None
    tail: bool = False
    scanned: int | None = None
    identity: str | None = None
    moved_to: str | None = None
    levels: str | None = None
    analysis: str | None = None
    error: str | None = None
    attempts: int = 0
    worker: str | None = None
    enqueued_at: object = None
    started_at: object = None
    ended_at: object = None
    updated_at: object = None
    parts: int = 1
    part_states: str = "[]"
    ignore_case: bool = False
    format: str | None = None


COLUMNS = [f.name for f in Scan._meta.sorted_fields if f.name != "id"]
HISTORY_COLUMNS = [f.name for f in History._meta.sorted_fields if f.name != "id"]
_values = operator.attrgetter(*COLUMNS)  # a Row's values, in the columns' order
#: Paths per SELECT: SQLite allows 32766 parameters per statement unless built with more.
SELECT_CHUNK = 8192


class FastRows:
    """Rows by prepared statements of the driver's own values (see the module's docstring)."""

    def __init__(self):
        self._statements = {}  # (what, database): SQL

    def load(self, paths) -> dict:
        """{path: Row} of those of `paths` that have a row."""
        paths, rows = list(paths), {}
        for start in range(0, len(paths), SELECT_CHUNK):
            chunk = paths[start : start + SELECT_CHUNK]
            width = _select_width(len(chunk))
            select = self._statement(
                ("select", width),
                lambda width=width: Scan.select(*[getattr(Scan, c) for c in COLUMNS]).where(
                    Scan.path.in_([""] * width)
                ),
            )
            with _as_peewee_errors():
                cursor = db.execute_sql(select, chunk + chunk[-1:] * (width - len(chunk)))
                rows.update((values[0], Row(*values)) for values in cursor.fetchall())
        return rows

    def save(self, rows):
        """Insert the rows, or update those whose path has one."""
        updates = [getattr(Scan, c) for c in COLUMNS if c != "path"]
        self._executemany(
            Scan,
            list(map(_values, rows)),
            lambda q: q.on_conflict(conflict_target=[Scan.path], preserve=updates),
        )

    def delete(self, paths):
        """Drop the rows of `paths` and their history (`logjobs forget`: rare, so Peewee's)."""
        _delete(paths)

    def add_history(self, entries):
        """Insert history entries, but for those whose stream id is in already (a step applied
        again)."""
        self._executemany(
            History,
            [tuple(e[c] for c in HISTORY_COLUMNS) for e in entries],
            lambda q: q.on_conflict_ignore(),
        )

    def _executemany(self, model, values, conflict):
        if values:
            columns = COLUMNS if model is Scan else HISTORY_COLUMNS
            statement = self._statement(
                model,
                lambda: conflict(
                    model.insert(dict.fromkeys((getattr(model, c) for c in columns), None))
                ),
            )
            with _as_peewee_errors():
                db.cursor().executemany(statement, values)

    def _statement(self, key, query):
        """The SQL of `query()`, built once per key and database."""
        key = (key, db.obj)
        if key not in self._statements:
            self._statements[key] = query().sql()[0]
        return self._statements[key]


class PeeweeRows:
    """Rows through Peewee's query API: what FastRows must equal."""

    def load(self, paths) -> dict:
        query = Scan.select(*[getattr(Scan, c) for c in COLUMNS]).where(Scan.path.in_(list(paths)))
        return {values[0]: Row(*values) for values in query.tuples()} if paths else {}

    def save(self, rows):
        for row in rows:
            values = dataclasses.asdict(row)
            Scan.insert(values).on_conflict(
                conflict_target=[Scan.path], update={k: v for k, v in values.items() if k != "path"}
            ).execute()

    def delete(self, paths):
        _delete(paths)

    def add_history(self, entries):
        for entry in entries:
            History.insert(entry).on_conflict_ignore().execute()


def _delete(paths):
    paths = list(paths)
    for start in range(0, len(paths), SELECT_CHUNK):
        chunk = paths[start : start + SELECT_CHUNK]
        History.delete().where(History.path.in_(chunk)).execute()
        Scan.delete().where(Scan.path.in_(chunk)).execute()


def _select_width(n):
    """The number of paths a SELECT of `n` asks for: the next power of two (the last path repeated),
    so that a few statements, built once, serve every batch."""
    return 1 << max(n - 1, 0).bit_length()


#: The DB-API exception classes Peewee has a class of its own for, by name, as its drivers raise
#: them.
_PEEWEE_ERRORS = {
    name: getattr(peewee, name)
    for name in (
        "DataError",
        "DatabaseError",
        "IntegrityError",
        "InterfaceError",
        "InternalError",
        "NotSupportedError",
        "OperationalError",
        "ProgrammingError",
    )
}


@contextlib.contextmanager
def _as_peewee_errors():
    """The driver's errors (sqlite3's, psycopg2's) as Peewee's, as Peewee's own execute_sql raises
    them: the mirror handles database trouble as Peewee's errors, whatever the driver."""
    try:
        yield
    except peewee.PeeweeException:
        raise
    except Exception as exc:
        name = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _PEEWEE_ERRORS), None)
        if name is None:
            raise
        raise _PEEWEE_ERRORS[name](*exc.args) from exc
