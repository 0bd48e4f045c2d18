"""logjobs' own pages, read from the status database (which outlives Redis's TTLs), and the Retry
action."""

import logging

import redis
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup

from .. import cancel as taking_back
from .. import push, queries, queues
from ..defaults import FAILED, LEVELS, QUEUES, STATES
from ..exceptions import LogJobsError
from . import security
from .database import serve_from_database

log = logging.getLogger(__name__)

PER_PAGE = 50
#: Seconds between reloads of a page whose "live" switch is on.
REFRESH = 3

blueprint = Blueprint("pages", __name__)
serve_from_database(blueprint)


def _context():
    return current_app.extensions["logjobs"]


#: logjobs' pages run no inline script, so they can forbid it (rq-dashboard's pages cannot).
POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
)


@blueprint.after_request
def _policy(response):
    response.headers.setdefault("Content-Security-Policy", POLICY)
    return response


@blueprint.context_processor
def _common():
    return {"queues": QUEUES, "states": STATES, "refresh": REFRESH}


@blueprint.app_template_filter("filesize")
def _filesize(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


@blueprint.app_template_filter("slashbreaks")
def _slashbreaks(path):
    """A path, escaped, that breaks across lines only after a '/' (<wbr>): each name between them
    is a span that logjobs.css keeps on one line (a browser would break after its hyphens)."""
    return Markup("/<wbr>").join(
        Markup('<span class="name">{}</span>').format(name) if name else ""
        for name in path.split("/")
    )


@blueprint.app_template_filter("when")
def _when(iso):
    """'2024-05-01T12:00:00.123Z' as '2024-05-01 12:00:00'."""
    return iso[:19].replace("T", " ")


@blueprint.route("/")
def overview():
    """Counts by state and queue, what Redis holds now, the timeline, throughput, top files,
    failures."""
    ctx = _context()
    try:
        live = queries.live(ctx.redis)
    except redis.RedisError as exc:
        live = {
            "error": f"cannot reach Redis at {ctx.settings.redacted_redis_url()}: "
            f"{type(exc).__name__}"
        }
    return render_template(
        "overview.html",
        status=queries.status(),
        by_queue=queries.by_queue(),
        live=live,
        timeline=queries.timeline(),
        throughput=queries.throughput(),
        top=queries.top_files(),
        failures=queries.files(state=FAILED, order="recent", limit=10),
    )


@blueprint.route("/files")
def files():
    """Per-file results, filtered by queue, state and path."""
    filters, page = _filters(), _page()
    found = queries.files(**filters, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    return render_template("files.html", found=found, filters=filters, page=page, per_page=PER_PAGE)


@blueprint.route("/failures")
def failures():
    """Failed files, newest first, with their reasons and attempts, and a Retry button each."""
    filters, page = dict(_filters(), state=FAILED), _page()
    found = queries.files(**filters, order="recent", limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    return render_template(
        "failures.html", found=found, filters=filters, page=page, per_page=PER_PAGE
    )


@blueprint.route("/file")
def file():
    """One file: its latest scan, and every state change of every scan of it."""
    path = _path_argument(request.args)
    row = queries.show(path)
    if row is None:
        abort(404, _unknown(path))
    found, timeline = queries.messages(path=row["path"], limit=10)
    return render_template(
        "file.html", row=row, messages=found, chart=queries.level_chart(timeline)
    )


@blueprint.route("/messages")
def messages():
    """Top message templates and lines per level over time, for all files or those matching a
    glob."""
    form = {k: request.args.get(k, "").strip() for k in ("path", "since", "until", "level")}
    window, error = {}, None
    for key in ("since", "until"):
        try:
            window[key] = queries.minute(form[key]) if form[key] else None
        except ValueError as exc:
            window[key], error = None, str(exc)
    level = form["level"].upper() if form["level"].upper() in LEVELS else None
    glob = form["path"] or None
    found, timeline = queries.messages(
        glob, window["since"], window["until"], [level] if level else None, limit=50
    )
    chart = queries.level_chart(timeline)
    return render_template(
        "messages.html", form=form, found=found, chart=chart, error=error, levels=LEVELS
    )


@blueprint.route("/retry", methods=["POST"])
def retry():
    """Push a failed file again, into its queue with its patterns and case (CSRF-checked, like
    every POST), with the settings' retry policy, timeout and sizes."""
    path = _path_argument(request.form)
    row = queries.show(path)
    if row is None:
        abort(404, _unknown(path))
    back = redirect(url_for(".file", path=path), code=303)
    if row["status"] != FAILED:
        flash(f"{path} is {row['status']}, not failed: nothing to retry", "warning")
        return back
    settings = _context().settings
    try:
        pushed = push.push(
            _context().redis,
            [path],
            queue=row["queue"],
            patterns=row["patterns"],
            ignore_case=row["ignore_case"],
            **settings.push_options(),
        )
    except LogJobsError as exc:
        flash(f"not retried: {exc}", "danger")
        return back
    except redis.RedisError as exc:
        _unreachable("retried", exc)
        return back
    if pushed.skipped:
        flash(f"{path} is already queued or running as {pushed.skipped[path][0]}", "warning")
    else:
        log.info("retry: %s pushed again into %s as %s", path, row["queue"], pushed.files[path][0])
        flash(f"retrying {path} in {row['queue']} as job {pushed.files[path][0]}", "success")
    return back


@blueprint.route("/cancel", methods=["POST"])
def cancel():
    """Take back a file's scan that has not ended, as `logjobs cancel PATH` (CSRF-checked)."""
    path = _path_argument(request.form)
    if queries.show(path) is None:
        abort(404, _unknown(path))
    back = redirect(_here(request.form.get("back")) or url_for(".file", path=path), code=303)
    by = security.caller()
    try:
        done = taking_back.cancel(_context().redis, [path], by)
    except redis.RedisError as exc:
        _unreachable("canceled", exc)
        return back
    if done.files:
        log.info("cancel: %s taken back by %s", path, by)
        flash(f"canceled the scan of {path}", "success")
    else:
        flash(f"{path}: its scan has ended, nothing to cancel", "warning")
    return back


def _unreachable(what, exc):
    """Flash that a button's change was not made: Redis did not answer."""
    url = _context().settings.redacted_redis_url()
    flash(f"not {what}: cannot reach Redis at {url}: {type(exc).__name__}", "danger")


def _here(url):
    """`url` if it is a page of this site (a form's way back), else None: never a way elsewhere."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return None


def _path_argument(args):
    """The `path` a page is asked about: a 400 unless it is an absolute path, as files are
    pushed."""
    path = args.get("path", "")
    if not path:
        abort(400, "which file? Give its absolute path: /file?path=/var/log/app.log")
    if not path.startswith("/"):
        abort(
            400,
            f"{path!r} is not an absolute path: files are known by the path they were "
            "pushed as, e.g. /var/log/app.log",
        )
    return path


def _unknown(path):
    return f"no file {path}: it was never pushed, or the mirror has not recorded it yet"


#: Pages of a list asked for at most: past it, the database's offset would overflow (a 500).
MAX_PAGE = 1_000_000


def _page():
    """The page number asked for, from 1 to MAX_PAGE."""
    return min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)


def _filters():
    """The queue (a priority, or a node's queue: `web1.high`), state and path filters of the query
    string; an unknown queue or state is left out, with a warning on the page."""
    queue, state = request.args.get("queue") or None, request.args.get("state") or None
    if queue is not None and queues.split_queue_name(queue)[1] is None:
        flash(f"no queue {queue!r}: showing every queue", "warning")
        queue = None
    if state is not None and state not in STATES:
        flash(f"no state {state!r}: showing every state", "warning")
        state = None
    return {"queue": queue, "state": state, "path": request.args.get("path", "").strip() or None}
