"""rq-dashboard's blueprint, mounted under /rq and given logjobs' Redis connection.

rq-dashboard would rebuild a connection from its config's URL on every request and print that URL
(masked by its own pattern) in its pages; instead it gets the one connection logjobs opens, and its
config holds only the redacted URL, so no password can reach a page.
"""

import base64
import hashlib
import logging
import re

import rq_dashboard
from flask import abort, current_app, request, url_for
from markupsafe import Markup
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq_dashboard import web as rq_web

from ..exceptions import one_line

log = logging.getLogger(__name__)

PREFIX = "/rq"
#: rq-dashboard's navbar brand, which links nowhere: it becomes the way back to logjobs' pages.
BRAND = '<a class="navbar-brand">RQ-dashboard</a>'
HOME = Markup('<a class="navbar-brand" href="{}">&larr; logjobs</a><span class="navbar-brand">RQ</span>')


def mount(app, settings, conn):
    """Register rq-dashboard at PREFIX, on `conn`: the single Redis logjobs is configured with."""
    app.config.update(RQ_DASHBOARD_REDIS_URL=(settings.redacted_redis_url(),), RQ_DASHBOARD_POLL_INTERVAL=2500)
    app.redis_conn = conn
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    hooks = app.before_request_funcs[rq_dashboard.blueprint.name]
    hooks.remove(rq_web.push_rq_connection)
    hooks.extend([_one_instance, _redis_answers])
    app.after_request_funcs.setdefault(rq_dashboard.blueprint.name, []).extend([_link_home, _policy])
    # A job page for a job Redis no longer has: rq-dashboard would answer 500.
    app.register_error_handler(NoSuchJobError, lambda exc: (
        "this job is no longer in Redis; logjobs' file pages keep its history\n", 404,
        {"Content-Type": "text/plain; charset=utf-8"}))
    # Redis away, or refusing a command (compacting an empty queue): rq-dashboard would answer 500, with
    # a traceback in the log.
    app.register_error_handler(RedisError, _redis_failed)


def _redis_failed(exc):
    reason = f"{type(exc).__name__}: {one_line(str(exc))}"
    log.warning("rq-dashboard: %s", reason)
    return f"Redis: {reason}\n", 503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "5"}


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

    Its job page writes a job's description (which names the file) and error into the page unescaped:
    a file named `<img src=x onerror=...>.log` would run script there, and script on that page holds
    the CSRF token of its buttons. Only the page's own inline script (allowed by its hash) and files
    from this server may run; underscore's templates need eval, which an attribute's handler does not
    get. (logjobs' own pages run no inline script at all: see pages._policy.)"""
    if response.mimetype == "text/html" and not response.direct_passthrough:
        hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'"
                          for code in _INLINE_SCRIPT.findall(response.get_data(as_text=True)))
        response.headers.setdefault(
            "Content-Security-Policy", f"default-src 'self'; script-src 'self' 'unsafe-eval' {hashes}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
    return response


#: The text of each script element the browser runs inline (not those with a src, nor templates).
_INLINE_SCRIPT = re.compile(r'<script(?![^>]*\bsrc=)(?![^>]*type="text/template")[^>]*>(.*?)</script>', re.S)
