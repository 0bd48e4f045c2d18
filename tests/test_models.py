"""The status database: a database made by an older logjobs is brought up to date by the writer, and
times are stored as the drivers store them."""

import sqlite3

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from peewee import SqliteDatabase

from logjobs.exceptions import ConfigError
from logjobs.models import Scan, open_database, stored_utc, utc

OLD_SCANS = """create table scans (id integer primary key, path text not null unique, job_id varchar not null,
    queue varchar not null, status varchar not null, patterns text not null, counts text, lines bigint, bytes bigint,
    compression varchar, error text, attempts integer not null, worker varchar, enqueued_at datetime not null,
    started_at datetime, ended_at datetime, updated_at datetime not null, parts integer not null,
    part_states text not null)"""


def test_older_database_gets_new_columns_from_the_writer_only(tmp_path):
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as c:
        c.execute(OLD_SCANS)
        c.execute(
            "insert into scans values (1, '/a.log', 'lj-1', 'default', 'finished', '[\"ERROR\"]', "
            "'{\"ERROR\": 2}', 5, 50, null, null, 1, 'w1', '2026-01-01', null, null, '2026-01-01', "
            "1, '[]')"
        )
    with pytest.raises(ConfigError, match="older logjobs: run `logjobs mirror --once`"):
        open_database(path, create=False)
    database = open_database(path)
    row = Scan.get(Scan.path == "/a.log").to_dict()
    assert row["counts"] == {"ERROR": 2} and row["levels"] == {} and row["scanned"] is None
    database.close()
    open_database(path, create=False).close()  # readers are fine now


@given(st.floats(min_value=0, max_value=2**35, allow_nan=False))
@example(1_700_000_000.0).via("a whole second: no fraction, as sqlite3's adapter writes it")
@example(1_700_000_000.9999996).via("rounds up into the next second")
@example(0.0000005).via("half a microsecond: rounds to even")
@example(0.0000015).via("rounds to even, up")
def test_sqlite_times_are_the_text_sqlite3_makes_of_utc(timestamp):
    # The mirror binds this text instead of the datetime, which sqlite3 would format through its
    # adapter.
    assert stored_utc(SqliteDatabase(None))(timestamp) == utc(timestamp).isoformat(" ")
    assert stored_utc(object()) is utc
