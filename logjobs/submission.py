"""A push as a user asks for it: the paths and options of `logjobs push`, checked against the
settings' bounds, expanded below the allowed roots and enqueued. `logjobs push`, `logjobs watch`
and the dashboard's HTTP API all push through it, so they take the same options, alike."""

import dataclasses
import os

import redis

from . import queues
from .defaults import DEFAULT_PATTERNS, DEFAULT_QUEUE
from .exceptions import ConfigError, PushRefused
from .paths import expand
from .push import Pushed, push
from .settings import RANGES, Settings, check_intervals, parse_intervals


def _text(name, value):
    if not isinstance(value, str):
        raise PushRefused(f"{name} must be a string; got {_kind(value)}")
    try:
        value.encode("utf-8", "surrogateescape")  # as a name or an argument on the command line
    except UnicodeEncodeError:
        raise PushRefused(
            f"{name} holds a lone surrogate, which no file name or text can"
        ) from None
    return value


def _texts(name, value):
    if not isinstance(value, list):
        raise PushRefused(f"{name} must be a list of strings; got {_kind(value)}")
    return tuple(_text(f"each of {name}", item) for item in value)


def _flag(name, value):
    if not isinstance(value, bool):
        raise PushRefused(f"{name} must be true or false; got {_kind(value)}")
    return value


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise PushRefused(f"{name} must be a whole number; got {_kind(value)}")
    return value


def _intervals(name, value):
    """Retry intervals as the command line writes them ("10,30,60"), or a list of seconds."""
    if isinstance(value, str):
        try:
            return parse_intervals(value)
        except ConfigError as exc:
            raise PushRefused(str(exc)) from None
    if not isinstance(value, list):
        raise PushRefused(f"{name} must be a string like '10,30,60' or a list of seconds")
    return tuple(_number(f"each of {name}", v) for v in value)


def _or_null(read):
    """`read`, but null is taken for the option left out."""
    return lambda name, value: None if value is None else read(name, value)


def _kind(value):
    """How a JSON value is named in a message: its type, and the value itself if it is short."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value))
    if value is None:
        return "null"
    if kind in ("an object", "a list"):
        return kind
    shown = repr(value)
    return f"{kind or 'a number'} {shown if len(shown) <= 40 else shown[:40] + '...'}"


def _option(default, read, setting=None):
    """A field of Submission: its default, how it is read from JSON, and the setting it overrides
    (whose bounds it has)."""
    return dataclasses.field(default=default, metadata={"read": read, "setting": setting})


@dataclasses.dataclass(frozen=True)
class Submission:
    """What a push is asked to do: `logjobs push`'s PATH arguments and options, by their names.
    An option left None takes the setting's value; one out of its setting's bounds is refused
    (PushRefused), as an unknown priority or a bad node name is."""

    paths: tuple[str, ...] = _option((), _texts)
    priority: str = _option(DEFAULT_QUEUE, _text)
    node: str | None = _option(None, _or_null(_text))
    patterns: tuple[str, ...] = _option((), _texts)  # none: DEFAULT_PATTERNS
    ignore_case: bool = _option(False, _flag)
    retries: int | None = _option(None, _or_null(_number), "retry_max")
    retry_intervals: tuple[int, ...] | None = _option(None, _or_null(_intervals), "retry_intervals")
    timeout: int | None = _option(None, _or_null(_number), "job_timeout")
    split_size: int | None = _option(None, _or_null(_number), "split_bytes")
    batch_files: int | None = _option(None, _or_null(_number), "batch_files")
    force: bool = _option(False, _flag)
    counts_only: bool = _option(False, _flag)

    def __post_init__(self):
        if not self.paths:
            raise PushRefused("no paths given: name a file, a directory or a glob")
        for field in dataclasses.fields(self):
            value, setting = getattr(self, field.name), field.metadata["setting"]
            if value is None or setting is None:
                continue
            if setting == "retry_intervals":
                try:
                    check_intervals(value)
                except ConfigError as exc:
                    raise PushRefused(str(exc)) from None
                continue
            least, most = RANGES[setting]
            if not least <= value <= most:
                raise PushRefused(f"{field.name} must be from {least} to {most}; got {value}")
        queues.queue_name(self.priority, self.node)  # an unknown priority, a bad node: refused

    @classmethod
    def from_json(cls, doc, others=()):
        """The submission a JSON object describes: `{"paths": [...], "priority": "high", ...}`, the
        options of `logjobs push` by their long names (`split_size`, `counts_only`...). Paths must
        be absolute: a relative one would be taken from the working directory of whoever reads
        it. `others` are the options the caller takes out itself (the API's `wait`)."""
        if not isinstance(doc, dict):
            raise PushRefused(
                f'the push must be a JSON object, {{"paths": [...]}}; got {_kind(doc)}'
            )
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - set(fields))
        if unknown:
            known = ", ".join([*fields, *others])
            raise PushRefused(f"unknown option {unknown[0]!r}; the options: {known}")
        if "paths" not in doc:
            raise PushRefused('no paths given: {"paths": ["/var/log/app/"]}')
        values = {name: fields[name].metadata["read"](name, value) for name, value in doc.items()}
        if "-" in values["paths"]:
            raise PushRefused("'-' reads paths from standard input, which JSON has none of")
        relative = [p for p in values["paths"] if not os.path.isabs(p)]
        if relative:
            raise PushRefused(f"{relative[0]!r} is not an absolute path: give absolute paths")
        return cls(**values)

    @property
    def queue(self):
        """The RQ queue this push goes into: a priority's, or a node's own."""
        return queues.queue_name(self.priority, self.node)

    def settings(self, settings):
        """`settings`, with this push's options laid over them."""
        overrides = {
            field.metadata["setting"]: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.metadata["setting"] and getattr(self, field.name) is not None
        }
        if self.counts_only:
            overrides["analysis"] = False
        return dataclasses.replace(settings, **overrides)

    def push(self, conn, settings: Settings, stdin=None):
        """Expand the paths (refused whole if one names nothing or lies outside the roots) and
        enqueue their scans: a Submitted."""
        files = expand(self.paths, roots=settings.roots, stdin=stdin)
        return Submitted(self.queue, self.enqueue(conn, settings, files))

    def enqueue(self, conn, settings: Settings, files) -> Pushed:
        """Enqueue scans of `files`, already expanded (`logjobs watch` finds its own)."""
        return push(
            conn,
            files,
            queue=self.queue,
            patterns=self.patterns or DEFAULT_PATTERNS,
            force=self.force,
            ignore_case=self.ignore_case,
            **self.settings(settings).push_options(),
        )


@dataclasses.dataclass
class Submitted:
    """What a push did (see push.Pushed), and the queue it went into."""

    queue: str
    pushed: Pushed

    def to_dict(self, outcome=None):
        """`push --json`'s document: what was enqueued, skipped and unchanged, and each file's
        outcome when it was waited for."""
        pushed = self.pushed
        doc = {
            "queue": self.queue,
            "enqueued": [
                _enqueued(p, ids, pushed.decisions.get(p)) for p, ids in pushed.files.items()
            ],
            "skipped": [{"path": p, "job_id": ids[0]} for p, ids in pushed.skipped.items()],
            "unchanged": [{"path": p, "reason": r} for p, r in pushed.unchanged.items()],
        }
        if outcome is not None:
            doc["outcome"] = outcome
        return doc


def _enqueued(path, ids, decision):
    doc = {
        "path": path,
        "job_id": ids[0],
        "parts": len(ids) if decision is None or decision.scan else 0,
    }
    if decision is not None:
        doc.update(scan=decision.action, since=decision.since, reason=decision.reason)
        if decision.moved_from:
            doc["moved_from"] = decision.moved_from
    return doc


def unattended(conn, queue, shown_url):
    """Why what is pushed into `queue` would only wait, if it would: no live worker reads it, or no
    mirror runs. Workers register in Redis as they start; a mirror marks each cycle."""
    from .rqsafe import Queue, Worker
    from .store import MirrorPresence

    try:
        workers = Worker.all(queue=Queue(queue, connection=conn))
        mirror = MirrorPresence.alive(conn)
    except redis.RedisError:
        return []  # the push went through; a look that fails now says nothing worth a warning
    reasons = []
    if not workers:
        node, _ = queues.split_queue_name(queue)
        start = (
            f"`logjobs worker --node {node}` on {node}"
            if node
            else "`rq worker high default low`, as README.md shows"
        )
        reasons.append(
            f"no worker reads queue {queue} at {shown_url}: its jobs wait until one starts "
            f"({start})"
        )
    if mirror is None:
        reasons.append(
            "no `logjobs mirror` is running: the status database (report, status, the "
            "dashboard) shows nothing of this push until one runs"
        )
    return reasons
