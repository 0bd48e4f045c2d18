"""The dashboard: one Flask app (rq-dashboard at /rq, logjobs' pages, /metrics), served by
waitress."""

import dataclasses
import secrets
import sys

import redis
import waitress
from flask import Flask
from prometheus_client import CollectorRegistry

from .. import connections
from ..defaults import DEFAULT_DASHBOARD_HOST
from ..exceptions import ConfigError
from ..settings import Settings, redact_url
from . import api, errors, metrics, pages, rqdashboard, security
from .database import StatusDatabase

#: Requests served at once; rq-dashboard polls every 2.5 s per open tab.
THREADS = 8


@dataclasses.dataclass
class Context:
    """What every request needs, kept in app.extensions["logjobs"]."""

    settings: Settings
    redis: redis.Redis
    status: StatusDatabase
    registry: CollectorRegistry


def create_app(settings, host=DEFAULT_DASHBOARD_HOST):
    """The WSGI app for `settings`, served at `host`. Connects to nothing until a request needs
    it."""
    app = Flask(__name__)
    app.config.update(
        # Per process: a restart ends every session, and with it every CSRF token.
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_NAME="logjobs_session",
        SESSION_COOKIE_SAMESITE="Strict",
        # valid for the session: an rq-dashboard tab may stay open for hours
        WTF_CSRF_TIME_LIMIT=None,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.HistoryCollector())
    conn = connections.connect(settings.redis_url, check=False)
    app.extensions["logjobs"] = Context(settings, conn, StatusDatabase(settings.db), registry)
    security.protect(app, settings, host)
    rqdashboard.mount(app, settings, conn)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(metrics.blueprint)
    api.mount(app)
    errors.install(app)
    return app


def serve(settings, host, port):
    """Serve the dashboard until interrupted; ConfigError if `host` is not loopback and no
    credentials are set."""
    security.check_bind(host, settings)
    app = create_app(settings, host)
    try:
        server = waitress.create_server(app, host=host, port=port, threads=THREADS, ident="logjobs")
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
        ) from None
    shown = f"[{host}]" if ":" in host else host
    print(
        f"logjobs dashboard on http://{shown}:{port}/ (rq-dashboard at {rqdashboard.PREFIX}/, "
        f"metrics at /metrics, API at {api.PREFIX}/; Redis {settings.redacted_redis_url()}, "
        f"database {redact_url(settings.db)}{', basic auth' if settings.dashboard_user else ''}"
        f"{', API token' if settings.api_token else ''})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
