"""Safe by default: loopback unless credentials are set, basic auth on everything, CSRF on every
POST.

The CSRF token is Flask-WTF's, tied to the session: logjobs' forms carry it in a hidden field;
rq-dashboard's own scripts already send a `_csrf_token` cookie's value as the `X-CSRFToken` header,
so the token is also handed to them in that cookie (readable only by same-origin pages).

Without credentials only requests for this server by a local name are answered (the Host header):
a page of another site, its name rebound to 127.0.0.1 (DNS rebinding), would otherwise read every
page and press every button. A client that keeps sending wrong passwords waits longer and longer.
"""

import base64
import hmac
import ipaddress
import socket
import threading
import time

from flask import Response, abort, request
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from ..exceptions import ConfigError

#: The cookie rq-dashboard's dashboard.js reads its CSRF token from.
RQ_CSRF_COOKIE = "_csrf_token"
#: rq-dashboard endpoints that change Redis: POST only (it accepts GET on requeue_all), with a
#: token.
RQ_MUTATIONS = {
    "delete_job_view",
    "requeue_job_view",
    "requeue_all",
    "empty_queue",
    "compact_queue",
}
REALM = "logjobs"

csrf = CSRFProtect()


def check_bind(host, settings):
    """Refuse (ConfigError) to serve beyond this machine without credentials, or with half of
    them."""
    user, password = settings.dashboard_user, settings.dashboard_password
    if bool(user) != bool(password):
        raise ConfigError(
            "set both LOGJOBS_DASHBOARD_USER and LOGJOBS_DASHBOARD_PASSWORD (or dashboard_user "
            "and dashboard_password in the config file), or neither"
        )
    if not user and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the dashboard on {host} without credentials: set "
            f"LOGJOBS_DASHBOARD_USER and LOGJOBS_DASHBOARD_PASSWORD, or bind 127.0.0.1"
        )


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


#: The names of this machine that a page may be asked for by without credentials.
LOCAL_NAMES = ("localhost", "localhost.localdomain", "127.0.0.1", "::1")


def allowed_hosts(host, settings):
    """The Host header values (names, no port) the dashboard answers when bound to `host`, or None
    for any: with credentials and no `dashboard_hosts`, any (a rebound name gains nothing without
    the password); else this machine's local names, the bound address, and `dashboard_hosts` ("*":
    any; ".example.com": that domain and its subdomains)."""
    if "*" in settings.dashboard_hosts or (
        settings.dashboard_user and not settings.dashboard_hosts
    ):
        return None
    bound = host.strip("[]").lower()
    return frozenset(
        {*LOCAL_NAMES, *settings.dashboard_hosts}
        | ({bound} if bound not in ("0.0.0.0", "::") else set())
    )


def host_name(header):
    """The host of a Host header, without its port, in lower case ("[::1]:9181" -> "::1")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.partition(":")[0]


def host_allowed(name, allowed):
    return (
        allowed is None
        or name in allowed
        or any(a.startswith(".") and (name.endswith(a) or name == a[1:]) for a in allowed)
    )


class Backoff:
    """Failed logins per client address: after FREE tries, each wrong one makes the client wait
    twice as long as the last (up to CAP seconds) before its next try is even checked. A right one
    clears the count."""

    FREE = 5
    CAP = 60.0
    CLIENTS = 10_000  # addresses remembered at most (the oldest go first)

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.failures = {}  # address -> (failures, when its next try may come)
        self.lock = threading.Lock()

    def wait(self, client):
        """Seconds `client` must still wait before a try is checked (0: none)."""
        with self.lock:
            _, until = self.failures.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, client):
        with self.lock:
            count = self.failures.pop(client, (0, 0.0))[0] + 1
            delay = 0.0 if count <= self.FREE else min(self.CAP, 2.0 ** (count - self.FREE - 1))
            if len(self.failures) >= self.CLIENTS:
                del self.failures[next(iter(self.failures))]
            self.failures[client] = (count, self.clock() + delay)

    def succeeded(self, client):
        with self.lock:
            self.failures.pop(client, None)


def protect(app, settings, host=None):
    """Install the Host check, basic auth (when configured) with a back-off on wrong passwords, CSRF
    checks, and headers that keep pages out of frames. `host` is the address the server binds."""
    allowed = allowed_hosts(host or "127.0.0.1", settings)
    if allowed is not None:

        @app.before_request
        def check_host():
            if not host_allowed(host_name(request.headers.get("Host", "")), allowed):
                return Response(
                    f"refused: this dashboard does not answer to the name {request.host!r}; add it "
                    "to dashboard_hosts (LOGJOBS_DASHBOARD_HOSTS) if it is this server's\n",
                    421,
                    {"Content-Type": "text/plain; charset=utf-8"},
                )
            return None

    if settings.dashboard_user:
        expected = (settings.dashboard_user.encode(), settings.dashboard_password.encode())
        backoff = app.extensions["logjobs.backoff"] = Backoff()

        @app.before_request
        def authenticate():
            client = request.remote_addr or "?"
            wait = backoff.wait(client)
            if wait and "Authorization" in request.headers:
                return Response(
                    "too many wrong passwords: try again later\n",
                    429,
                    {
                        "Retry-After": str(int(wait) + 1),
                        "Content-Type": "text/plain; charset=utf-8",
                    },
                )
            if _authorized(expected):
                backoff.succeeded(client)
                return None
            if "Authorization" in request.headers:
                backoff.failed(client)
            return _challenge()

    app.before_request(_rq_mutations_by_post_only)
    csrf.init_app(app)  # after the auth check: a stranger gets 401, not a hint about tokens
    app.after_request(_headers)
    app.register_error_handler(
        CSRFError,
        lambda exc: (
            f"refused: {exc.description}\n",
            400,
            {"Content-Type": "text/plain; charset=utf-8"},
        ),
    )


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
    return Response(
        "authentication required\n",
        401,
        {
            "WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"',
            "Content-Type": "text/plain; charset=utf-8",
        },
    )


def _rq_mutations_by_post_only():
    blueprint, _, endpoint = (request.endpoint or "").partition(".")
    if blueprint == "rq_dashboard" and endpoint in RQ_MUTATIONS and request.method != "POST":
        abort(405)


def _headers(response):
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.blueprint == "rq_dashboard" and response.mimetype == "text/html":
        response.set_cookie(
            RQ_CSRF_COOKIE,
            generate_csrf(),
            samesite="Strict",
            secure=request.is_secure,
            path=request.script_root + "/",
        )
    return response
