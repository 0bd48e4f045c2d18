"""The status database: a database made by an older logjobs is brought up to date by the writer."""

import sqlite3

import pytest

from logjobs.exceptions import ConfigError
from logjobs.models import Scan, open_database

OLD_SCANS = """create table scans (id integer primary key, path text not null unique, job_id varchar not null,
    queue varchar not null, status varchar not null, patterns text not null, counts text, lines bigint, bytes bigint,
    compression varchar, error text, attempts integer not null, worker varchar, enqueued_at datetime not null,
    started_at datetime, ended_at datetime, updated_at datetime not null, parts integer not null,
    part_states text not null)"""


def test_older_database_gets_new_columns_from_the_writer_only(tmp_path):
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as c:
        c.execute(OLD_SCANS)
        c.execute("insert into scans values (1, '/a.log', 'lj-1', 'default', 'finished', '[\"ERROR\"]', "
                  "'{\"ERROR\": 2}', 5, 50, null, null, 1, 'w1', '2026-01-01', null, null, '2026-01-01', 1, '[]')")
    with pytest.raises(ConfigError, match="older logjobs: run `logjobs mirror --once`"):
        open_database(path, create=False)
    database = open_database(path)
    row = Scan.get(Scan.path == "/a.log").to_dict()
    assert row["counts"] == {"ERROR": 2} and row["levels"] == {} and row["scanned"] is None
    database.close()
    open_database(path, create=False).close()  # readers are fine now
