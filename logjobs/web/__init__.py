"""The web dashboard: rq-dashboard under /rq, logjobs' pages from the status database, and
/metrics."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
