"""Error pages in the dashboard's own layout: a bad request, a page or file not found, a method not
allowed, each saying what was wrong and linking back to the Files page.

rq-dashboard's routes keep their own answers (its scripts read some of them)."""

import rq_dashboard
from flask import render_template, request

from . import api, security
from .pages import POLICY

#: The statuses answered with logjobs' page.
CODES = (400, 404, 405)


def install(app):
    """Answer CODES with logjobs' error page, on every route but rq-dashboard's."""
    for code in CODES:
        app.register_error_handler(code, _page)


def _page(exc):
    if request.blueprint == rq_dashboard.blueprint.name:
        return exc
    if security.is_api():  # JSON there, always
        return api.http_error(exc)
    response = render_template("error.html", code=exc.code, name=exc.name, message=_message(exc))
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # 405's Allow
    headers["Content-Security-Policy"] = POLICY
    return response, exc.code, headers


def _message(exc):
    """What the route aborted with; where it gave no reason (no route matched, no such static
    file), what was asked for."""
    if exc.description != type(exc).description:
        return exc.description
    if exc.code == 404:
        return f"no page {request.path} here"
    if exc.code == 405:
        allowed = ", ".join(sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"}))
        return f"{request.method} is not allowed on {request.path} (only {allowed})"
    return exc.description
