"""Opening the Redis connection every logjobs command shares with RQ."""

from urllib.parse import urlsplit

import redis
import redis_sentinel_url
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError

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
    if check:
        ping(url)
    return _client(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2, base=0.1), retries=3),
    )


def ping(url):
    """Raise ConnectionFailed, naming the URL, unless Redis answers within CONNECT_TIMEOUT seconds.

    Asked by a client of its own that neither retries nor waits long: a server that takes
    connections but never answers (stopped, hung, another service on its port) would hold a working
    client for 16 x SOCKET_TIMEOUT, its retries of a command nesting the retries of its health
    check.
    """
    conn = _client(url, socket_timeout=CONNECT_TIMEOUT, retry=Retry(NoBackoff(), 0))
    try:
        conn.ping()
    except redis.AuthenticationError as exc:
        if urlsplit(url).password is None:
            raise ConnectionFailed(
                f"Redis at {redact_url(url)} wants a password, and the URL gives none "
                "(redis://:PASSWORD@host:port/db)"
            ) from None
        raise ConnectionFailed(
            f"Redis at {redact_url(url)} refused the credentials: {exc}"
        ) from None
    except MasterNotFoundError:  # its message holds the repr of every sentinel client: a kilobyte
        raise ConnectionFailed(
            f"cannot reach Redis at {redact_url(url)}: no sentinel there names a master "
            "for the service (are they up, and is the service name right?)"
        ) from None
    except redis.RedisError as exc:
        raise ConnectionFailed(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
    finally:
        conn.close()


def _client(url, **options):
    options.update(
        socket_connect_timeout=CONNECT_TIMEOUT, encoding_errors="surrogateescape"
    )  # names need not be UTF-8
    database = (
        urlsplit(url).path.rsplit("/", 1)[-1] if url.startswith(("redis://", "rediss://")) else ""
    )
    if database and not database.isdigit():  # redis-py takes any such path for database 0
        raise ConfigError(
            f"bad Redis URL {redact_url(url)!r}: the database must be a number, not {database!r}"
        )
    try:
        if url.startswith(SENTINEL_SCHEME):
            return redis_sentinel_url.connect(url, client_options=options)[1]
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {redact_url(url)!r}: {exc}") from None
