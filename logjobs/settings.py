"""One Settings value, resolved in one order: built-in defaults < config file < LOGJOBS_* env <
flags."""

import configparser
import dataclasses
import os
import re
import stat
from urllib.parse import parse_qsl, urlencode, urlsplit

from . import defaults
from .exceptions import ConfigError

CONFIG_SECTION = "logjobs"


def _words(text):
    """Split a list setting written with commas or whitespace."""
    return [w for w in text.replace(",", " ").split() if w]


def _paths(text):
    return [os.path.abspath(os.path.expanduser(p)) for p in text.split(os.pathsep) if p.strip()]


def parse_intervals(text):
    """Retry intervals written like '10, 30, 60' (commas or spaces)."""
    try:
        values = [int(w) for w in _words(text)]
    except ValueError:
        raise ConfigError(
            f"retry_intervals must be whole seconds, like '10, 30, 60'; got {text!r}"
        ) from None
    return check_intervals(values, text)


def check_intervals(values, shown=None):
    """The retry intervals as a tuple, if they are within bounds; `shown` is how the user wrote
    them."""
    shown = ", ".join(map(str, values)) if shown is None else shown
    if any(v < 0 for v in values):
        raise ConfigError(f"retry_intervals cannot be negative; got {shown!r}")
    if len(values) > defaults.MAX_RETRIES or any(v > defaults.MAX_RETRY_INTERVAL for v in values):
        raise ConfigError(
            f"retry_intervals: at most {defaults.MAX_RETRIES} intervals of at most "
            f"{defaults.MAX_RETRY_INTERVAL} s; got {shown!r}"
        )
    return tuple(values)


def _int(name, least, most):
    """A parser of whole numbers from `least` to `most`: a value out of range is a mistake to say at
    once (a job timeout of 10**20 s failed every attempt inside RQ, its row left queued)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number; got {text!r}") from None
        if value < least:
            raise ConfigError(f"{name} must be at least {least}; got {text!r}")
        if value > most:
            raise ConfigError(f"{name} must be at most {most}; got {text!r}")
        return value

    return parse


def _bool(name):
    words = {
        "on": True,
        "true": True,
        "yes": True,
        "1": True,
        "off": False,
        "false": False,
        "no": False,
        "0": False,
    }

    def parse(text):
        try:
            return words[text.strip().lower()]
        except KeyError:
            raise ConfigError(f"{name} must be on or off; got {text!r}") from None

    return parse


def _hosts(text):
    """Host names as the dashboard may be asked for them (lower case, without a port)."""
    return tuple(w.lower() for w in _words(text))


#: An API token: what `Authorization: Bearer` may carry (RFC 6750's token68), long enough that it
#: cannot be guessed. `secrets.token_urlsafe()` makes one of 43 characters.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def _api_token(text):
    text = text.strip()
    if not _TOKEN.fullmatch(text):
        raise ConfigError(
            "api_token may hold only letters, digits and - . _ ~ + / (then = signs), as a Bearer "
            "token does"
        )
    if not defaults.MIN_API_TOKEN <= len(text) <= defaults.MAX_API_TOKEN:
        raise ConfigError(
            f"api_token must be {defaults.MIN_API_TOKEN} to {defaults.MAX_API_TOKEN} characters "
            "long; make one with: python3 -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    return text


#: The ranges of the numeric settings (and of the push options that set them).
RANGES = {
    "retry_max": (0, defaults.MAX_RETRIES),
    "job_timeout": (1, defaults.MAX_JOB_TIMEOUT),
    "split_bytes": (0, defaults.MAX_SPLIT_BYTES),
    "batch_files": (1, defaults.MAX_BATCH_FILES),
}

#: setting name -> (environment variable, parser of its text form)
_SOURCES = {
    "redis_url": ("LOGJOBS_REDIS_URL", str),
    "db": ("LOGJOBS_DB", str),
    "roots": ("LOGJOBS_ROOTS", _paths),
    "retry_max": ("LOGJOBS_RETRY_MAX", _int("retry_max", *RANGES["retry_max"])),
    "retry_intervals": ("LOGJOBS_RETRY_INTERVALS", parse_intervals),
    "job_timeout": ("LOGJOBS_JOB_TIMEOUT", _int("job_timeout", *RANGES["job_timeout"])),
    "split_bytes": ("LOGJOBS_SPLIT_BYTES", _int("split_bytes", *RANGES["split_bytes"])),
    "batch_files": ("LOGJOBS_BATCH_FILES", _int("batch_files", *RANGES["batch_files"])),
    "analysis": ("LOGJOBS_ANALYSIS", _bool("analysis")),
    "examples": ("LOGJOBS_EXAMPLES", _bool("examples")),
    "dashboard_user": ("LOGJOBS_DASHBOARD_USER", str),
    "dashboard_password": ("LOGJOBS_DASHBOARD_PASSWORD", str),
    "dashboard_hosts": ("LOGJOBS_DASHBOARD_HOSTS", _hosts),
    "api_token": ("LOGJOBS_API_TOKEN", _api_token),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything `push`, `mirror`, `status`, `report` and `dashboard` need to know."""

    redis_url: str = defaults.DEFAULT_REDIS_URL
    db: str = defaults.DEFAULT_DB
    roots: tuple = ()
    retry_max: int = defaults.DEFAULT_RETRY_MAX
    retry_intervals: tuple = defaults.DEFAULT_RETRY_INTERVALS
    job_timeout: int = defaults.DEFAULT_JOB_TIMEOUT
    split_bytes: int = defaults.DEFAULT_SPLIT_BYTES
    batch_files: int = defaults.DEFAULT_BATCH_FILES
    analysis: bool = True  # levels, top messages and times beside the counts (see analysis)
    examples: bool = True  # an example line of each message template (off: no raw line is stored)
    dashboard_user: str | None = None
    dashboard_password: str | None = None
    # Host header values the dashboard answers besides its own (see web.security)
    dashboard_hosts: tuple = ()
    # What `Authorization: Bearer` must carry for the dashboard's HTTP API (see web.security)
    api_token: str | None = dataclasses.field(default=None, repr=False)
    # The user's log formats (formats.Format), from the config file's [format NAME] sections
    formats: tuple = ()
    config_file: str | None = None

    @classmethod
    def load(cls, config_file=None, environ=None, **flags):
        """Resolve settings; `flags` left as None fall through to env, config file, default."""
        environ = os.environ if environ is None else environ
        config_file = config_file or environ.get("LOGJOBS_CONFIG") or None
        values = {}
        if config_file:
            values.update(_read_config(config_file))
        for name, (var, parse) in _SOURCES.items():
            if environ.get(var):
                values[name] = _parsed(parse, environ[var], f"environment variable {var}")
        values.update({k: v for k, v in flags.items() if v is not None})
        for name in ("redis_url", "db"):
            if name in values and not values[name].strip():
                raise ConfigError(
                    f"{name} is empty (--{name.replace('_', '-')}, {_SOURCES[name][0]} or the "
                    f"config file)"
                )
        for name in ("roots", "retry_intervals", "dashboard_hosts", "formats"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(config_file=config_file, **values)

    def push_options(self):
        """The keyword arguments of `push.push` these settings decide (retry policy, timeout,
        sizes)."""
        return {
            "retry_max": self.retry_max,
            "retry_intervals": self.retry_intervals,
            "timeout": self.job_timeout,
            "split_bytes": self.split_bytes,
            "batch_files": self.batch_files,
            "analyse": self.analysis,
            "examples": self.examples,
        }

    def redacted_redis_url(self):
        """The Redis URL with any password masked, for messages and logs."""
        return redact_url(self.redis_url)


#: Query parameters of a URL that carry a secret (libpq's and redis-py's spellings among them).
_SECRET_PARAMS = re.compile(r"pass(word|wd)?|pwd|secret|token|.*password|api_?key|auth", re.I)


def redact_url(url):
    """The URL with every credential masked, for messages, logs and pages: the password of its
    `user:password@` (of each host, for a list of them) and any query parameter that holds a secret.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that cannot be parsed>"
    netloc = ",".join(_masked_host(host) for host in parts.netloc.split(","))
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if _SECRET_PARAMS.fullmatch(k) else v) for k, v in pairs], safe="*/:"
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Not urlunsplit: it writes unix:///path with an empty host as unix:/path.
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _masked_host(netloc):
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return netloc
    return f"{userinfo.partition(':')[0]}:***@{host}"


#: Bytes of a config file read at most: it is a few lines (a device or /dev/zero would never end).
MAX_CONFIG_BYTES = 1 << 20


def _read_config(path):
    parser = configparser.ConfigParser(
        interpolation=None
    )  # a "%" is itself (URL-encoded passwords have them)
    try:
        parser.read_string(_config_text(path))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except configparser.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid INI: {first_line}") from None
    if not parser.has_section(CONFIG_SECTION):
        raise ConfigError(f"config file {path} has no [{CONFIG_SECTION}] section")
    values = _formats(parser, path)
    section = parser[CONFIG_SECTION]
    unknown = sorted(set(section) - set(_SOURCES))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting {unknown[0]!r}; known: {', '.join(_SOURCES)}"
        )
    values.update(
        (name, _parsed(_SOURCES[name][1], text, f"config file {path}"))
        for name, text in section.items()
    )
    return values


def _formats(parser, path):
    """{"formats": the user's formats} from the config file's `[format NAME]` sections, if any."""
    from . import formats

    sections = {
        name: dict(parser.items(name, raw=True))
        for name in parser.sections()
        if name.split()[0] == "format"
    }
    if not sections:
        return {}
    try:
        found = formats.from_config(sections)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    names = [f.name for f in formats.BUILTIN] + [f.name for f in found]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ConfigError(f"config file {path}: a format named {doubled[0]!r} exists already")
    return {"formats": tuple(found)}


def _config_text(path):
    """The text of a config file: a regular file of at most MAX_CONFIG_BYTES, never waited on (a
    FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"config file {path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {path} is over {MAX_CONFIG_BYTES >> 10} KiB: is it the right file?"
        )
    return data.decode("utf-8")


def _parsed(parse, text, source):
    """`parse(text)`; its error names where the text came from."""
    try:
        return parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
