"""The mirror's fast SQL path (rowstore.FastRows) leaves the same tables as Peewee's plain one, and
rows.apply takes any events of the right shape without failing."""

import dataclasses
import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logjobs import events, rows
from logjobs.models import History, Scan, db, open_database
from logjobs.rowstore import COLUMNS, FastRows, PeeweeRows, Row

RESULT = {
    "counts": {"ERROR": 2},
    "lines": 5,
    "bytes": 50,
    "compression": None,
    "tail": False,
    "analysis": {
        "levels": {"ERROR": 2},
        "minutes": {"2024-05-01T12:00": {"ERROR": 2}},
        "messages": [
            {
                "level": "ERROR",
                "template": "boom <NUM>",
                "count": 2,
                "example": "boom 1",
                "minutes": {"2024-05-01T12:00": 2},
            }
        ],
        "overflow": 0,
    },
}


def test_a_row_has_the_scans_tables_columns_in_order():
    assert [f.name for f in dataclasses.fields(Row)] == COLUMNS


def history_of(seed, files=40):
    """Events of pushes, attempts, retries, failures, split files and rotations, in a plausible
    order."""
    rng = random.Random(seed)
    out, t = [], time.time() - 3600
    for i in range(files):
        path, job = f"/l/{i}.log", f"lj-{seed}-{i}"
        parts = rng.choice([1, 1, 1, 3])
        out += [
            events.Event(
                f"{job}-{p}",
                path,
                "queued",
                part=p,
                parts=parts,
                queue=rng.choice(["high", "low"]),
                patterns=["ERROR"],
                at=t + i,
                identity={
                    "dev": 1,
                    "ino": i,
                    "size": 50,
                    "mtime_ns": 0,
                    "compression": None,
                    "head_len": 9,
                    "head": "h",
                }
                if p == 0
                else None,
            )
            for p in range(parts)
        ]
        for p in range(parts):
            attempts = rng.choice([1, 1, 2])
            for attempt in range(1, attempts + 1):
                out.append(
                    events.Event(
                        f"{job}-{p}", path, "started", attempt, p, at=t + i + attempt, worker="w1"
                    )
                )
                if attempt < attempts:
                    out.append(
                        events.Event(
                            f"{job}-{p}",
                            path,
                            "scheduled",
                            attempt,
                            p,
                            at=t + i + attempt + 0.5,
                            error="read error",
                        )
                    )
            end = rng.choice(["finished", "finished", "failed"])
            out.append(
                events.Event(
                    f"{job}-{p}",
                    path,
                    end,
                    attempts,
                    p,
                    at=t + i + 5,
                    worker="w2",
                    result=RESULT if end == "finished" else None,
                    error=None if end == "finished" else "corrupt gzip data",
                )
            )
    for i in range(0, files, 7):  # renamed away, their counts continued under a new name
        out.append(
            events.Event(
                f"lj-{seed}-m{i}",
                f"/l/{i}.log.1",
                "queued",
                parts=2,
                queue="low",
                patterns=["ERROR"],
                base=f"lj-{seed}-{i}-0",
                since=50,
                moved_from=f"/l/{i}.log",
                at=t + 100 + i,
            )
        )
    pushes = [e for e in out if e.is_push and not e.base]
    rest = [e for e in out if not e.is_push or e.base]
    rng.shuffle(
        rest
    )  # late and out of order, after the pushes: the order of each part's events decides
    out = pushes + rest
    for n, event in enumerate(out):
        event.stream_id = f"1-{seed}/{n}"
    return out


def tables():
    return (
        [tuple(r) for r in Scan.select().order_by(Scan.path).tuples()],
        [tuple(r)[1:] for r in History.select().order_by(History.stream_id).tuples()],
    )


def apply_all(path, batch, store):
    database = open_database(str(path))
    for start in range(0, len(batch), 50):
        with db.atomic():
            rows.apply(
                [
                    dataclasses.replace(e) if dataclasses.is_dataclass(e) else _copy(e)
                    for e in batch[start : start + 50]
                ],
                store,
            )
    found = tables()
    database.close()
    return found


def _copy(event):
    import msgspec

    return msgspec.structs.replace(event)


def test_the_fast_path_leaves_the_tables_the_plain_one_does(tmp_path):
    for seed in range(3):
        batch = history_of(seed)
        fast = apply_all(tmp_path / f"fast{seed}.db", batch, FastRows())
        plain = apply_all(tmp_path / f"plain{seed}.db", batch, PeeweeRows())
        assert fast == plain
        assert len(fast[0]) >= 40
        # Every event is recorded, but a continued scan's base: only when it cannot be continued.
        continued = {e.stream_id for e in batch if e.base}
        recorded = {row[0] for row in fast[1]}  # stream ids
        assert recorded | continued == {e.stream_id for e in batch}
        bases = [row for row in fast[1] if row[0] in continued]
        assert all(row[5] == "failed" and "no longer" in row[8] for row in bases), bases


_text = st.text(max_size=8)
_event = st.builds(
    events.Event,
    job_id=st.sampled_from(["j1", "j2", "j3"]),
    path=st.sampled_from(["/a", "/b"]),
    state=st.sampled_from(["queued", "started", "finished", "failed", "scheduled"]),
    attempt=st.integers(0, 3),
    part=st.integers(0, 3),
    at=st.floats(0, 2e9),
    parts=st.one_of(st.none(), st.integers(1, 4)),
    queue=st.sampled_from(["high", None]),
    patterns=st.one_of(st.none(), st.lists(_text, max_size=2)),
    base=st.one_of(st.none(), st.sampled_from(["j1", "j2"])),
    moved_from=st.one_of(st.none(), st.sampled_from(["/a", "/b", "/c"])),
    worker=st.one_of(st.none(), st.sampled_from(["w", "reconcile"])),
    error=st.one_of(st.none(), _text),
    result=st.one_of(
        st.none(), st.just(RESULT), st.just({"counts": {}, "lines": None, "bytes": 0})
    ),
    started_at=st.one_of(st.none(), st.floats(0, 2e9)),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(_event, max_size=25))
def test_any_events_of_the_right_shape_apply_without_failing(tmp_path, batch):
    """Events that pass events.Event.check, in any order, however odd (a part past its file's parts,
    a base that is no scan): the mirror applies them, or skips them, and never fails on them."""
    valid = []
    for n, event in enumerate(batch):
        try:
            event.check()
        except ValueError:
            continue
        event.stream_id = f"1-0/{n}"
        valid.append(event)
    database = open_database(str(tmp_path / "fuzz.db"))
    try:
        with db.atomic():
            rows.apply(valid)
    finally:
        with db.atomic():
            Scan.delete().execute()
            History.delete().execute()
        database.close()
