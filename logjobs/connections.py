"""Opening the Redis connection every logjobs command shares with RQ."""

import redis
import redis_sentinel_url
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .exceptions import ConfigError, ConnectionFailed
from .settings import redact_url

#: Seconds to wait for Redis to accept a connection or answer a command before giving up.
CONNECT_TIMEOUT = 5
SOCKET_TIMEOUT = 30
SENTINEL_SCHEME = "redis+sentinel://"


def connect(url, check=True):
    """A Redis client for `url`; with `check`, fail now if unreachable.

    `url` is redis://, rediss://, unix://, or redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]
    for a client that follows whichever server Redis Sentinel says is the master of SERVICE.
    """
    options = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 30,
        "encoding_errors": "surrogateescape",  # file names need not be UTF-8
        "retry": Retry(ExponentialBackoff(cap=2, base=0.1), retries=3),
    }
    try:
        if url.startswith(SENTINEL_SCHEME):
            _, conn = redis_sentinel_url.connect(url, client_options=options)
        else:
            conn = redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {redact_url(url)!r}: {exc}") from None
    if check:
        ping(conn, url)
    return conn


def ping(conn, url):
    """Raise ConnectionFailed, naming the URL, unless Redis answers."""
    try:
        conn.ping()
    except redis.AuthenticationError as exc:
        raise ConnectionFailed(f"Redis at {redact_url(url)} refused the credentials: {exc}") from None
    except redis.RedisError as exc:
        raise ConnectionFailed(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
