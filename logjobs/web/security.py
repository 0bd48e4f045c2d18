"""Safe by default: loopback unless credentials are set, basic auth on everything, CSRF on every POST.

The CSRF token is Flask-WTF's, tied to the session: logjobs' forms carry it in a hidden field;
rq-dashboard's own scripts already send a `_csrf_token` cookie's value as the `X-CSRFToken` header,
so the token is also handed to them in that cookie (readable only by same-origin pages).
"""

import base64
import hmac
import ipaddress
import socket

from flask import Response, abort, request
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from ..exceptions import ConfigError

#: The cookie rq-dashboard's dashboard.js reads its CSRF token from.
RQ_CSRF_COOKIE = "_csrf_token"
#: rq-dashboard endpoints that change Redis: POST only (it accepts GET on requeue_all), with a token.
RQ_MUTATIONS = {"delete_job_view", "requeue_job_view", "requeue_all", "empty_queue", "compact_queue"}
REALM = "logjobs"

csrf = CSRFProtect()


def check_bind(host, settings):
    """Refuse (ConfigError) to serve beyond this machine without credentials, or with half of them."""
    user, password = settings.dashboard_user, settings.dashboard_password
    if bool(user) != bool(password):
        raise ConfigError("set both LOGJOBS_DASHBOARD_USER and LOGJOBS_DASHBOARD_PASSWORD (or dashboard_user "
                          "and dashboard_password in the config file), or neither")
    if not user and not is_loopback(host):
        raise ConfigError(f"refusing to serve the dashboard on {host} without credentials: set "
                          f"LOGJOBS_DASHBOARD_USER and LOGJOBS_DASHBOARD_PASSWORD, or bind 127.0.0.1")


def is_loopback(host):
    """True when every address `host` names is on this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def protect(app, settings):
    """Install basic auth (when configured), CSRF checks, and headers that keep pages out of frames."""
    if settings.dashboard_user:
        expected = (settings.dashboard_user.encode(), settings.dashboard_password.encode())

        @app.before_request
        def authenticate():
            return None if _authorized(expected) else _challenge()

    app.before_request(_rq_mutations_by_post_only)
    csrf.init_app(app)  # after the auth check: a stranger gets 401, not a hint about tokens
    app.after_request(_headers)
    app.register_error_handler(CSRFError, lambda exc: (f"refused: {exc.description}\n", 400,
                                                      {"Content-Type": "text/plain; charset=utf-8"}))


def _authorized(expected):
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).partition(b":")
    except ValueError:
        return False
    # Both compared, always: the time taken says nothing about which one was wrong.
    ok_user = hmac.compare_digest(user, expected[0])
    ok_password = hmac.compare_digest(password, expected[1])
    return bool(sep) and ok_user and ok_password


def _challenge():
    return Response("authentication required\n", 401, {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"',
                                                      "Content-Type": "text/plain; charset=utf-8"})


def _rq_mutations_by_post_only():
    blueprint, _, endpoint = (request.endpoint or "").partition(".")
    if blueprint == "rq_dashboard" and endpoint in RQ_MUTATIONS and request.method != "POST":
        abort(405)


def _headers(response):
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.blueprint == "rq_dashboard" and response.mimetype == "text/html":
        response.set_cookie(RQ_CSRF_COOKIE, generate_csrf(), samesite="Strict", secure=request.is_secure,
                            path=request.script_root + "/")
    return response
