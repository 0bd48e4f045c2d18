"""The JSON that `logjobs status`, `report`, `show` and `top` print with --json, and that the
dashboard's HTTP API answers: written by the same functions, so the two say the same, byte for
byte."""

import json
import textwrap

import redis

from .exceptions import LogJobsError


def dumps(doc):
    """One document as --json prints it (without the newline that ends the output)."""
    return json.dumps(doc, indent=2)


def json_list(items):
    """`dumps(list(items))` in pieces, an item at a time: a report of a million files holds one."""
    opening = "["
    for item in items:
        yield opening + "\n" + textwrap.indent(dumps(item), "  ")
        opening = ","
    yield "[]" if opening == "[" else "\n]"


def status(connect):
    """`status --json`: the files by state and queue, the workers that ran them and the latest
    failures, from the status database (open), and what Redis says now (`connect()` gives a
    client), or why it cannot say (`redis_error`)."""
    from . import queries  # the database's modules: not for `push --json`, which starts fast

    doc = dict(queries.status(), recent_failures=queries.recent_failures())
    try:
        doc.update(queries.live(connect()))
    except (LogJobsError, redis.RedisError) as exc:
        doc["redis_error"] = str(exc)
    return doc
