"""Safe by default: loopback unless credentials are set, basic auth on everything, CSRF on every
POST.

The CSRF token is Flask-WTF's, tied to the session: logjobs' forms carry it in a hidden field;
rq-dashboard's own scripts already send a `_csrf_token` cookie's value as the `X-CSRFToken` header,
so the token is also handed to them in that cookie (readable only by same-origin pages).

Without credentials only requests for this server by a local name are answered (the Host header):
a page of another site, its name rebound to 127.0.0.1 (DNS rebinding), would otherwise read every
page and press every button. A client that keeps sending wrong passwords waits longer and longer.

The HTTP API (web.api) also takes the API token, as `Authorization: Bearer`: a browser never sends
it on its own, so a call made with it needs no CSRF token. Its refusals are JSON.
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import time

from flask import Response, abort, g, request
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
#: Where the HTTP API is served (web.api): the only URLs the API token opens.
API_PREFIX = "/api/"
#: How a request proved who it is (g.logjobs_auth): with the API token, or the basic credentials.
BY_TOKEN, BY_PASSWORD = "token", "password"

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
                return refusal(
                    f"refused: this dashboard does not answer to the name {request.host!r}; add it "
                    "to dashboard_hosts (LOGJOBS_DASHBOARD_HOSTS) if it is this server's",
                    421,
                )
            return None

    if settings.dashboard_user or settings.api_token:
        credentials = Credentials(settings)
        backoff = app.extensions["logjobs.backoff"] = Backoff()

        @app.before_request
        def authenticate():
            client = request.remote_addr or "?"
            wait = backoff.wait(client)
            if wait and "Authorization" in request.headers:
                wrong = "passwords or tokens" if credentials.token else "passwords"
                return refusal(
                    f"too many wrong {wrong}: try again later", 429, {"Retry-After": int(wait) + 1}
                )
            if not credentials.needed():
                return None  # a page, where only an API token is set: open, as without one
            g.logjobs_auth = credentials.check()
            if g.logjobs_auth:
                backoff.succeeded(client)
                return None
            if "Authorization" in request.headers:
                backoff.failed(client)
            return credentials.challenge()

    app.before_request(_rq_mutations_by_post_only)
    csrf.init_app(app)  # after the auth check: a stranger gets 401, not a hint about tokens
    app.after_request(_headers)
    app.register_error_handler(CSRFError, _csrf_refused)


def _csrf_refused(exc):
    hint = " (a script sends Authorization: Bearer <api_token> instead)" if is_api() else ""
    return refusal(f"refused: {exc.description}{hint}", 400)


def is_api():
    """Is this request for the HTTP API?"""
    return request.path.startswith(API_PREFIX)


def by_token():
    """Did this request prove itself with the API token (and so needs no CSRF token)?"""
    return g.get("logjobs_auth") == BY_TOKEN


def caller():
    """Who this request acts for, as a row says who canceled: the user (or the API token), and
    the client's address."""
    auth = request.authorization
    user = "api-token" if by_token() else (auth.username if auth else "dashboard")
    return f"{user}@{request.remote_addr}"


def refusal(text, status, headers=None):
    """A response saying `text` (one line): `{"error": text}` on the API, plain text elsewhere."""
    headers = {name: str(value) for name, value in (headers or {}).items()}
    if is_api():
        body = json.dumps({"error": text}) + "\n"
        return Response(body, status, headers, mimetype="application/json")
    return Response(text + "\n", status, headers, content_type="text/plain; charset=utf-8")


class Credentials:
    """What the settings accept: the dashboard's user and password (basic auth) everywhere, and the
    API token (Bearer) on the API."""

    def __init__(self, settings):
        self.password = (
            (settings.dashboard_user.encode(), settings.dashboard_password.encode())
            if settings.dashboard_user
            else None
        )
        self.token = _digest(settings.api_token) if settings.api_token else None

    def needed(self):
        """Must this request prove who it is? Everywhere with a password; on the API with a
        token."""
        return bool(self.password or (self.token and is_api()))

    def check(self):
        """BY_TOKEN or BY_PASSWORD: the credentials this request carries, if they are right here
        (else None)."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token and is_api():
            # Digests compared: equal lengths, so the time taken does not even say the length.
            return BY_TOKEN if hmac.compare_digest(_digest(value.strip()), self.token) else None
        if scheme.lower() == "basic" and self.password:
            return BY_PASSWORD if _authorized(value, self.password) else None
        return None

    def challenge(self):
        """401, naming the schemes that would be accepted here."""
        schemes = []
        if self.token and is_api():
            schemes.append(f'Bearer realm="{REALM}"')
        if self.password:
            schemes.append(f'Basic realm="{REALM}", charset="UTF-8"')
        sent = request.headers.get("Authorization", "").partition(" ")[0].lower()
        # Credentials of a kind taken here but wrong (a stale token) are said apart from none.
        if sent == "bearer" and self.token and is_api():
            text = "wrong credentials: the API token is not this dashboard's"
        elif sent == "basic" and self.password:
            text = "wrong credentials: the user or password is not this dashboard's"
        else:
            text = "authentication required" + (
                ": send Authorization: Bearer <api_token>" if self.token and is_api() else ""
            )
        response = refusal(text, 401)
        for scheme in schemes:
            response.headers.add("WWW-Authenticate", scheme)
        return response


def _digest(token):
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _authorized(encoded, expected):
    """Are the basic credentials `encoded` (base64 of user:password) the `expected` pair?"""
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).partition(b":")
    except ValueError:
        return False
    # Both compared, always: the time taken says nothing about which one was wrong.
    ok_user = hmac.compare_digest(user, expected[0])
    ok_password = hmac.compare_digest(password, expected[1])
    return bool(sep) and ok_user and ok_password


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
