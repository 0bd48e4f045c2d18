"""The dashboard's HTTP API, under /api/v1: push (the options of `logjobs push`), status, report,
a file's record and top messages, each the JSON that the command's --json prints (written by the
same functions: submission, documents, queries).

Behind the dashboard's credentials (web.security): the basic ones, or, on the API only, the API
token as `Authorization: Bearer`. A POST made with the token needs no CSRF token (a browser never
sends the token by itself); any other POST needs the session's, as the pages' forms do. Every answer
is JSON, refusals too: `{"error": "<one line>"}`, with a 4xx status for what the request got wrong
and 503 for what the server cannot reach (Redis, the status database).
"""

import contextlib
import itertools
import json
import logging
import os
import threading

import redis
from flask import Blueprint, Response, abort, current_app, request
from peewee import PeeweeException
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .. import cancel as taking_back
from .. import connections, documents, outcomes, queries, scanner
from ..defaults import JOB_ID_PREFIX, LEVELS
from ..exceptions import LogJobsError, NoDatabase, PushCut, PushRefused, one_line
from ..models import database_reason
from ..settings import redact_url
from ..submission import Submission, unattended
from . import security

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
#: Bytes of a request's body read at most: a push names a few paths (thousands of files are a
#: folder or a glob).
MAX_BODY = 1 << 20
#: Seconds a push with "wait" waits for its files at most, and between its looks at their jobs.
MAX_WAIT = 600
WAIT_POLL = 0.1
#: Pushes waiting at once, at most: each holds one of the server's threads (web.app.THREADS).
MAX_WAITING = 4
#: Targets one cancel names at most.
MAX_TARGETS = 1000
#: What `report?failed=` may say for on, and for off.
ON, OFF = ("", "1", "true", "yes", "on"), ("0", "false", "no", "off")
#: Seconds a client is told to wait before it asks again a server that could not answer.
RETRY_AFTER = 5

blueprint = Blueprint("api", __name__, url_prefix=PREFIX)


def mount(app):
    """Serve the API on `app` (whose security.protect has run)."""
    app.register_blueprint(blueprint)
    security.csrf.exempt(blueprint)  # checked in _csrf_unless_token instead
    app.extensions["logjobs.api.waiting"] = threading.BoundedSemaphore(MAX_WAITING)
    # A URL under /api/ that no route takes (404), or a method a route does not (405): JSON too.
    app.register_error_handler(HTTPException, http_error)


def _context():
    return current_app.extensions["logjobs"]


@blueprint.before_request
def _csrf_unless_token():
    """CSRF-check a call not made with the API token, as the pages' forms are; refuse a Bearer
    token where none is set (it would pass for no credentials at all)."""
    scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
    if scheme == "bearer" and not _context().settings.api_token:
        return security.refusal(
            "this dashboard has no API token: set api_token (LOGJOBS_API_TOKEN) where it runs",
            401,
        )
    if not security.by_token():
        security.csrf.protect()  # a POST without the session's CSRF token: 400
    return None


@blueprint.after_request
def _not_cached(response):
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# -- the endpoints ---------------------------------------------------------------------------------


@blueprint.post("/push")
def push():
    """`logjobs push --json`: a JSON object of its options by their long names, "paths" a list;
    with "wait": true, the answer comes once every file is finished or failed (`push --wait`)."""
    doc = _body()
    wait = doc.pop("wait", False)
    if not isinstance(wait, bool):
        abort(400, "wait must be true or false")
    submission = Submission.from_json(doc, others=("wait",))
    ctx = _context()
    connections.ping(ctx.settings.redis_url)  # unreachable: 503 within seconds, nothing enqueued
    waiting = current_app.extensions["logjobs.api.waiting"]
    if wait and not waiting.acquire(blocking=False):
        return security.refusal(
            f"{MAX_WAITING} push(es) waiting already, as many as may: push without wait, and "
            f"follow the files with GET {PREFIX}/report",
            429,
            {"Retry-After": RETRY_AFTER},
        )
    try:
        submitted = submission.push(ctx.redis, ctx.settings)
        shown = ctx.settings.redacted_redis_url()
        warnings = unattended(ctx.redis, submitted.queue, shown) if submitted.pushed.job_ids else []
        if not wait:
            return _answer(dict(submitted.to_dict(), warnings=warnings))
        return _waited(ctx, submitted, warnings)
    finally:
        if wait:
            waiting.release()


@blueprint.post("/cancel")
def cancel():
    """`logjobs cancel --json`: {"targets": [absolute paths, globs or job ids]}. The rows say who:
    the dashboard's user, or the API token, and the client's address."""
    doc = _body()
    targets = doc.pop("targets", None)
    if doc:
        abort(400, f"unknown option {sorted(doc)[0]!r}: {PREFIX}/cancel takes targets")
    if (
        not isinstance(targets, list)
        or not 0 < len(targets) <= MAX_TARGETS
        or not all(isinstance(t, str) and t and "\0" not in t for t in targets)
    ):
        abort(400, f"targets must be a list of 1 to {MAX_TARGETS} paths, globs or job ids")
    for target in targets:
        if not (target.startswith("/") or target.startswith(JOB_ID_PREFIX)):
            abort(400, f"{target!r} is neither an absolute path nor a job id")
    ctx = _context()
    connections.ping(ctx.settings.redis_url)
    return _answer(taking_back.cancel(ctx.redis, targets, security.caller()).to_dict())


def _waited(ctx, submitted, warnings):
    """The answer of a push that waits for its files: 200 with each file's outcome, or 202 without
    them if they are not all done after MAX_WAIT seconds."""
    try:
        outcome = outcomes.wait(ctx.redis, submitted.pushed, poll=WAIT_POLL, timeout=MAX_WAIT)
    except LogJobsError as exc:  # still running
        pending = f"{exc}: they stay queued; GET {PREFIX}/report follows them"
        return _answer(dict(submitted.to_dict(), warnings=warnings, pending=pending), 202)
    except redis.RedisError as exc:
        url = ctx.settings.redacted_redis_url()
        error = f"lost Redis at {url} while waiting ({one_line(str(exc))}); the files stay queued"
        return _answer(dict(error=error, **submitted.to_dict(), warnings=warnings), 503)
    return _answer(dict(submitted.to_dict(outcome), warnings=warnings))


@blueprint.get("/status")
def status():
    """`logjobs status --json`; 503 (with the database's counts) when Redis does not answer."""
    _options()
    ctx = _context()
    with _database():
        doc = documents.status(lambda: _redis(ctx))
    if "redis_error" in doc:
        return _answer({"error": doc["redis_error"], **doc}, 503, {"Retry-After": RETRY_AFTER})
    return _answer(doc)


def _redis(ctx):
    connections.ping(ctx.settings.redis_url)  # as the command's connect(): an answer in seconds
    return ctx.redis


@blueprint.get("/report")
def report():
    """`logjobs report --json`, streamed a row at a time; options `failed`, `path` (a glob),
    `since`, `until`."""
    _options("failed", "path", "since", "until")
    rows = queries.report(_flag("failed"), _minute("since"), _minute("until"), _glob("path"))
    return _streamed(rows)


@blueprint.get("/files")
def files():
    """`logjobs show --json`: the record of the file at `path`, or of the scan `job_id`."""
    _options("path", "job_id")
    path, job_id = request.args.get("path"), request.args.get("job_id")
    if (path is None) == (job_id is None):
        abort(400, "give path=<absolute path> or job_id=<id>")
    if path is not None and not os.path.isabs(path):
        abort(400, f"path {scanner.printable(path)!r} is not absolute")
    with _database():
        doc = queries.show(path, job_id)
    if doc is None:
        abort(
            404,
            f"no scan of {scanner.printable(path or job_id)} in the status database; "
            f"GET {PREFIX}/report lists them",
        )
    return _answer(doc)


@blueprint.get("/top")
def top():
    """`logjobs top --json`; options `path` (a glob), `since`, `until`, `level` (repeatable) and
    `limit`."""
    _options("path", "since", "until", "limit", many=("level",))
    found = (_glob("path"), _minute("since"), _minute("until"), _levels() or None, _limit())
    with _database():
        return _answer(queries.top(*found))


# -- what the endpoints share ---------------------------------------------------------------------


def _answer(doc, status=200, headers=None):
    """`doc` as the command's --json prints it."""
    return Response(documents.dumps(doc) + "\n", status, headers, mimetype="application/json")


def _streamed(items):
    """A JSON list of `items` (a generator reading the status database), written as they come: the
    database stays open until the last is sent."""
    database = _context().status
    database.connect()
    try:
        first = next(items, None)  # the query runs here: what fails answers 503, before the body
    except BaseException:
        database.close()
        raise

    def body():
        try:
            yield from documents.json_list(itertools.chain([] if first is None else [first], items))
            yield "\n"
        except Exception:
            log.exception("the API's answer to %s broke off", request.full_path)
            raise
        finally:
            database.close()

    return Response(body(), mimetype="application/json")


@contextlib.contextmanager
def _database():
    """The status database, open in the block."""
    database = _context().status
    database.connect()
    try:
        yield
    finally:
        database.close()


def _body():
    """The request's body: a JSON object of at most MAX_BODY bytes."""
    if request.mimetype != "application/json":
        abort(415, "send the body as JSON, with Content-Type: application/json")
    too_large = f"the body is over {MAX_BODY >> 10} KiB: name folders or globs, not every file"
    if (request.content_length or 0) > MAX_BODY:
        abort(413, too_large)
    data = request.stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        abort(413, too_large)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        abort(400, f"the body is not JSON: {one_line(str(exc))}")
    if not isinstance(doc, dict):
        abort(400, 'the body must be a JSON object: {"paths": [...], ...}')
    return doc


def _options(*names, many=()):
    """Refuse options of the query string other than `names` (each once) and `many`."""
    known = (*names, *many)
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        takes = f"takes {', '.join(known)}" if known else "takes none"
        abort(400, f"unknown option {unknown[0]!r}: {request.path} {takes}")
    for name in names:
        if len(request.args.getlist(name)) > 1:
            abort(400, f"{name} given more than once")


def _flag(name):
    value = request.args.get(name)
    if value is None or value.lower() in OFF:
        return False
    if value.lower() in ON:
        return True
    abort(400, f"{name} must be true or false, not {value!r}")


def _minute(name):
    """The minute key of a time option (see queries.minute), or None."""
    value = request.args.get(name)
    try:
        return None if value is None else queries.minute(value)
    except ValueError as exc:
        abort(400, f"{name}: {exc}")


def _glob(name):
    """A glob of absolute paths (`*` spans `/`), or None."""
    value = request.args.get(name)
    if value is None:
        return None
    if "\0" in value or not value.startswith(("/", "*", "?", "[")):
        abort(400, f"bad glob {value!r}: paths are absolute, so a glob starts with /, * or ?")
    return value


def _levels():
    levels = [level.upper() for level in request.args.getlist("level")]
    for level in levels:
        if level not in LEVELS:
            abort(400, f"unknown level {level!r}; choose from {', '.join(LEVELS)}")
    return levels


def _limit():
    value = request.args.get("limit", "20")
    if not value.isdigit() or int(value) < 1:
        abort(400, f"limit must be a whole number from 1; got {value!r}")
    return int(value)


# -- refusals: JSON, one line --------------------------------------------------------------------


def http_error(exc):
    """An HTTP error as JSON on the API (elsewhere, as it is): its own words when it was given any,
    else what the API has."""
    if not security.is_api():
        return exc
    headers = {k: v for k, v in exc.get_headers() if k == "Allow"}
    text = exc.description
    if isinstance(exc, NotFound) and text == NotFound.description:
        text = f"no such endpoint: {request.path} (see docs/dashboard.md, HTTP API)"
    elif isinstance(exc, MethodNotAllowed):
        methods = sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"})  # Flask's own
        text = f"{request.path} takes {', '.join(methods)}, not {request.method}"
    return security.refusal(one_line(text or exc.name), exc.code or 500, headers)


@blueprint.errorhandler(LogJobsError)
def _refused(exc):
    """What logjobs refused: the request's fault (400), or the server's (503: Redis, the status
    database, its settings)."""
    if isinstance(exc, PushRefused):
        return security.refusal(str(exc), 400)
    text = str(exc)
    if isinstance(exc, PushCut):
        text = f"lost Redis at {_context().settings.redacted_redis_url()} {exc}"
    if isinstance(exc, NoDatabase):
        log.debug("status database: %s", exc)
    return security.refusal(text, 503, {"Retry-After": RETRY_AFTER})


@blueprint.errorhandler(redis.RedisError)
def _redis_failed(exc):
    url = _context().settings.redacted_redis_url()
    log.warning("API: lost Redis at %s: %s", url, exc)
    reason = f"{type(exc).__name__}: {one_line(str(exc))}"
    return security.refusal(f"lost Redis at {url}: {reason}", 503, {"Retry-After": RETRY_AFTER})


@blueprint.errorhandler(PeeweeException)
def _database_failed(exc):
    target = _context().status.target
    reason = database_reason(exc, target)  # a database URL may carry a password
    log.warning("API: status database %s: %s: %s", redact_url(target), type(exc).__name__, reason)
    text = f"the status database failed: {type(exc).__name__}: {reason}"
    return security.refusal(text, 503, {"Retry-After": RETRY_AFTER})


@blueprint.errorhandler(Exception)
def _internal(exc):
    log.exception("API: %s %s", request.method, request.full_path)
    return security.refusal(
        f"internal error: {type(exc).__name__} (the dashboard's log says where)", 500
    )


blueprint.register_error_handler(HTTPException, http_error)
