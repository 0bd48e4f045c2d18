"""The plain data logjobs keeps in Redis, as typed shapes, checked wherever it is read back.

Whoever can write to Redis can write anything there, and a worker of another logjobs version may
write a little more. So what is read (events, scan records, done-records) is decoded into these
shapes with msgspec, which checks every type and bound in C: a value that does not fit is skipped
by its reader with one warning, never trusted. Fields this version does not know are left out.

JSON of text that is not UTF-8 (a pattern given as such bytes, kept by Python as lone surrogates)
is what msgspec refuses: it goes through the stdlib, then through the same checks.
"""

import json
from typing import Annotated, Literal, NamedTuple

import msgspec

from .defaults import LEVELS, MAX_PARTS

#: Bytes of one value logjobs reads back at most: a bigger one was not written by logjobs.
MAX_VALUE_BYTES = 16 << 20

Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 62)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=1 << 62)]
Path = Annotated[str, msgspec.Meta(min_length=1, max_length=1 << 16)]
Text = Annotated[str, msgspec.Meta(max_length=1 << 16)]
#: A time bucket of an analysis: a minute "2024-05-01T12:03", an hour "2024-05-01T12" or a day.
Bucket = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\d(T\d\d(:\d\d)?)?$")]
Level = Literal[LEVELS]  # type: ignore[valid-type]
#: A level in an analysis' minutes: one of LEVELS, or "-" for lines with a time and no level.
MinuteLevel = Literal[(*LEVELS, "-")]  # type: ignore[valid-type]


class Shape(msgspec.Struct, forbid_unknown_fields=False):
    """Base of the shapes: fields this version does not know are dropped."""


class FrozenShape(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Base of the shapes that are values: they never change once made."""


class Identity(FrozenShape, frozen=True):
    """What tells a file apart whatever its name (tracking.Identity adds how to take it)."""

    dev: Offset
    ino: Offset
    size: Offset
    mtime_ns: int
    compression: Literal["gzip", "bzip2", "xz"] | None
    head_len: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)]
    head: Annotated[str, msgspec.Meta(max_length=128)]


class Message(Shape):
    level: Level | None
    template: Text
    count: Count
    example: Text
    minutes: dict[Bucket, Count] = {}


class Analysis(Shape):
    """analysis.Analysis.to_dict()."""

    levels: dict[Level, Count] = {}
    minutes: dict[Bucket, dict[MinuteLevel, Count]] = {}
    messages: list[Message] = []
    overflow: Count = 0
    format: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class Result(Shape, omit_defaults=True):
    """scanner.ScanResult.to_dict()."""

    counts: dict[str, Count]
    lines: Count | None
    bytes: Offset
    compression: Literal["gzip", "bzip2", "xz"] | None = None
    tail: bool = False
    analysis: Analysis | None = None
    partial: "Result | None" = None  # the last line's own result, when `tail`


class Done(Shape):
    """What a job records of a file it is done with (jobs.Reporter): its result, or why it failed
    for good."""

    result: Result | None = None
    error: Text | None = None


class Record(Identity, frozen=True, kw_only=True):
    """What was counted of a file by its last finished scan, for the pushes to come (see tracking):
    the identity of the file it read, and where it ended, with what."""

    job_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")]
    end: Offset
    patterns: list[str]
    counts: dict[str, Count]
    tail: bool = False
    partial: Offset = 0  # with `tail`: the bytes of that last line, where a push continues from
    partial_counts: dict[str, Count] = {}  # ... and its counts (it is one line)
    analysed: bool = False
    lines: Count | None = None
    ignore_case: bool = False


class Resume(NamedTuple):
    """Where a scan continuing an earlier one (or one part of several) starts, and the head the file
    must still have there (else it was replaced since it was pushed)."""

    since: int
    head_len: int
    head: str


class Task(Shape, omit_defaults=True):
    """One file (or byte range of one) a scan job reads: the wire form of a job's tasks."""

    path: Path
    start: Offset = 0
    end: Offset | None = None
    part: Annotated[int, msgspec.Meta(ge=0, le=MAX_PARTS)] = 0
    resume: Resume | None = None


class ScanOptions(Shape, omit_defaults=True):
    """What a scan job counts, and how: the wire form of a job's options."""

    patterns: Annotated[list[str], msgspec.Meta(min_length=1, max_length=1000)]
    analyse: bool = True
    examples: bool = True
    ignore_case: bool = False


State = Literal["queued", "started", "finished", "failed", "scheduled", "canceled", "forgotten"]
Part = Annotated[int, msgspec.Meta(ge=0, le=MAX_PARTS)]


class Invalid(ValueError):
    """A value read from Redis does not have the shape logjobs writes."""


def decode(raw, shape):
    """`raw` (bytes or str, JSON) as `shape`; Invalid if it is not one."""
    if raw is None or len(raw) > MAX_VALUE_BYTES:
        raise Invalid("missing" if raw is None else f"over {MAX_VALUE_BYTES >> 20} MiB")
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None
    except msgspec.DecodeError:
        pass
    try:  # text with lone surrogates, which only the stdlib's JSON reads
        return msgspec.convert(json.loads(raw), shape)
    except (ValueError, msgspec.ValidationError, RecursionError) as exc:
        raise Invalid(f"not JSON of the right shape: {str(exc)[:200]}") from None


def convert(value, shape):
    """Plain data (a job's arguments, as RQ loaded them) as `shape`; Invalid if it is not one."""
    try:
        return msgspec.convert(value, shape)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None


def encode(value) -> bytes:
    """JSON of a shape (or of plain data), lone surrogates included."""
    try:
        return msgspec.json.encode(value)
    except UnicodeEncodeError:
        return json.dumps(msgspec.to_builtins(value)).encode()


def read(raw, shape, what, warn):
    """decode(raw, shape), or None when `raw` is missing or not one (then `warn(key, message,
    *args)` is told, with `what` in its key and its message)."""
    if raw is None:
        return None
    try:
        return decode(raw, shape)
    except Invalid as exc:
        warn(("invalid", what), "skipping %s in Redis: not as logjobs writes it (%s)", what, exc)
        return None


def number(raw, default=0, kind=int):
    """A number kept in Redis (an attempt count; with `kind=float`, a time), or `default` when it is
    none or not a number."""
    try:
        return kind(raw) if raw is not None else default
    except ValueError:
        return default


def text(raw) -> str:
    """A name kept in Redis as bytes (a job id, a state), as text; bytes that are not UTF-8 are
    escaped."""
    return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw


def plain(value):
    """A shape (or plain data holding shapes) as plain dicts and lists: what the status database
    stores."""
    return msgspec.to_builtins(value)
