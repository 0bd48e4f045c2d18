"""rq-dashboard's blueprint, mounted under /rq and given logjobs' Redis connection and RQ classes.

rq-dashboard would rebuild a connection from its config's URL on every request and print that URL
(masked by its own pattern) in its pages; instead it gets the one connection logjobs opens, and its
config holds only the redacted URL, so no password can reach a page.

It loads jobs with RQ's own classes (pickle: whoever wrote to Redis would run code here) and writes
some of what Redis holds into its pages unescaped. So it is handed logjobs' RQ classes (rqsafe), and
its JSON is escaped where its templates do not escape it (ESCAPED). Both adapt rq-dashboard 0.9's
module, hence its upper bound in setup.cfg.
"""

import base64
import hashlib
import html
import json
import logging
import re

import rq_dashboard
from flask import abort, current_app, request, url_for
from markupsafe import Markup
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq_dashboard import web as rq_web

from .. import rqsafe
from ..exceptions import one_line

log = logging.getLogger(__name__)

PREFIX = "/rq"
#: rq-dashboard's navbar brand, which links nowhere: it becomes the way back to logjobs' pages.
BRAND = '<a class="navbar-brand">RQ-dashboard</a>'
HOME = Markup(
    '<a class="navbar-brand" href="{}">&larr; logjobs</a><span class="navbar-brand">RQ</span>'
)


#: The names rq-dashboard's views load jobs, queues and workers with, and what stands in for them.
SAFE_NAMES = {"Job": rqsafe.Job, "Queue": rqsafe.Queue, "Worker": rqsafe.Worker}
#: What each of rq-dashboard's JSON endpoints holds that its templates write into a page unescaped:
#: (endpoint, list of items or None for the object itself, fields).
ESCAPED = {
    "list_jobs": ("jobs", ("id",)),
    "job_info": (
        None,
        ("id", "description", "origin", "status", "metadata", "exc_info", "result", "depends_on"),
    ),
    "list_workers": (
        "workers",
        ("name", "queues", "current_job.job_id", "current_job.call_string"),
    ),
    "list_queues": ("queues", ("name",)),
}


def mount(app, settings, conn):
    """Register rq-dashboard at PREFIX, on `conn`: the single Redis logjobs is configured with."""
    app.config.update(
        RQ_DASHBOARD_REDIS_URL=(settings.redacted_redis_url(),), RQ_DASHBOARD_POLL_INTERVAL=2500
    )
    app.redis_conn = conn
    _use_safe_classes()
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    hooks = app.before_request_funcs[rq_dashboard.blueprint.name]
    hooks.remove(rq_web.push_rq_connection)
    hooks.extend([_one_instance, _redis_answers])
    app.after_request_funcs.setdefault(rq_dashboard.blueprint.name, []).extend(
        [_link_home, _policy, _escape_json]
    )
    # A job page for a job Redis no longer has: rq-dashboard would answer 500.
    app.register_error_handler(
        NoSuchJobError,
        lambda exc: (
            "this job is no longer in Redis; logjobs' file pages keep its history\n",
            404,
            {"Content-Type": "text/plain; charset=utf-8"},
        ),
    )
    # Redis away, or refusing a command (compacting an empty queue): rq-dashboard would answer 500,
    # with a traceback in the log.
    app.register_error_handler(RedisError, _redis_failed)


def _use_safe_classes():
    """Point rq-dashboard's module at logjobs' RQ classes (see rqsafe): it names RQ's own at
    import."""
    missing = [name for name in (*SAFE_NAMES, "requeue_job", "config") if not hasattr(rq_web, name)]
    if (
        missing
    ):  # an rq-dashboard this code was not written for: fail now, not on a page, nor unsafely
        raise RuntimeError(
            f"rq-dashboard {getattr(rq_web, 'rq_dashboard_version', '?')} has no "
            f"{', '.join(missing)}: logjobs cannot make it load jobs safely"
        )
    for name, safe in SAFE_NAMES.items():
        setattr(rq_web, name, safe)
    rq_web.requeue_job = _requeue
    rq_web.config.serializer = rqsafe.Serializer


def _requeue(job_id, connection):
    """rq-dashboard's Requeue button: RQ's requeue_job, with logjobs' Job."""
    return rqsafe.Job.fetch(job_id, connection=connection).requeue()


def _escape_json(response):
    """Escape, in rq-dashboard's JSON, what its templates write into a page as HTML (see
    ESCAPED)."""
    endpoint = (request.endpoint or "").rpartition(".")[2]
    if (
        endpoint not in ESCAPED
        or response.mimetype != "application/json"
        or response.direct_passthrough
    ):
        return response
    items, fields = ESCAPED[endpoint]
    doc = json.loads(response.get_data())
    for item in (doc.get(items) or []) if items else [doc]:
        for field in fields:
            *path, name = field.split(".")
            target = item
            for step in path:
                target = target.get(step) if isinstance(target, dict) else None
            if isinstance(target, dict) and name in target:
                target[name] = _escaped(target[name])
    response.set_data(json.dumps(doc))
    return response


def _escaped(value):
    """`value` with every string in it HTML-escaped."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def _redis_failed(exc):
    reason = f"{type(exc).__name__}: {one_line(str(exc))}"
    log.warning("rq-dashboard: %s", reason)
    return (
        f"Redis: {reason}\n",
        503,
        {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "5"},
    )


def _one_instance():
    """Serve instance 0 (the configured Redis) only; rq-dashboard supports lists of them."""
    if (request.view_args or {}).get("instance_number", 0) != 0:
        abort(404)


def _redis_answers():
    """rq-dashboard's queues page catches a lost Redis itself and answers 200 "Connection Error":
    asked first, Redis gives the 503 every other page gives."""
    if request.endpoint == f"{rq_dashboard.blueprint.name}.queues_overview":
        current_app.redis_conn.ping()


def _link_home(response):
    """Turn rq-dashboard's navbar brand into a link back to logjobs' overview."""
    if response.mimetype == "text/html" and not response.direct_passthrough:
        home = HOME.format(url_for("pages.overview"))
        response.set_data(response.get_data(as_text=True).replace(BRAND, home, 1))
    return response


def _policy(response):
    """Let rq-dashboard's pages run their own scripts, and nothing else.

    Its job page writes a job's description (which names the file) and error into the page
    unescaped: a file named `<img src=x onerror=...>.log` would run script there, and script on that
    page holds the CSRF token of its buttons. Only the page's own inline script (allowed by its
    hash) and files from this server may run; underscore's templates need eval, which an attribute's
    handler does not get. (logjobs' own pages run no inline script at all: see pages._policy.)"""
    if response.mimetype == "text/html" and not response.direct_passthrough:
        hashes = " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'"
            for code in _INLINE_SCRIPT.findall(response.get_data(as_text=True))
        )
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; script-src 'self' 'unsafe-eval' {hashes}; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        )
    return response


#: The text of each script element the browser runs inline (not those with a src, nor templates).
_INLINE_SCRIPT = re.compile(
    r'<script(?![^>]*\bsrc=)(?![^>]*type="text/template")[^>]*>(.*?)</script>', re.S
)
