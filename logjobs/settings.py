"""One Settings value, resolved in one order: built-in defaults < config file < LOGJOBS_* env < flags."""

import configparser
import dataclasses
import os
from urllib.parse import urlsplit, urlunsplit

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
        raise ConfigError(f"retry_intervals must be whole seconds, like '10, 30, 60'; got {text!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"retry_intervals cannot be negative; got {text!r}")
    return tuple(values)


def _int(name, least=0):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number; got {text!r}") from None
        if value < least:
            raise ConfigError(f"{name} must be at least {least}; got {text!r}")
        return value
    return parse


def _bool(name):
    words = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}

    def parse(text):
        try:
            return words[text.strip().lower()]
        except KeyError:
            raise ConfigError(f"{name} must be on or off; got {text!r}") from None
    return parse


#: setting name -> (environment variable, parser of its text form)
_SOURCES = {
    "redis_url": ("LOGJOBS_REDIS_URL", str),
    "db": ("LOGJOBS_DB", str),
    "roots": ("LOGJOBS_ROOTS", _paths),
    "retry_max": ("LOGJOBS_RETRY_MAX", _int("retry_max")),
    "retry_intervals": ("LOGJOBS_RETRY_INTERVALS", parse_intervals),
    "job_timeout": ("LOGJOBS_JOB_TIMEOUT", _int("job_timeout", least=1)),
    "split_bytes": ("LOGJOBS_SPLIT_BYTES", _int("split_bytes")),
    "batch_files": ("LOGJOBS_BATCH_FILES", _int("batch_files", least=1)),
    "analysis": ("LOGJOBS_ANALYSIS", _bool("analysis")),
    "dashboard_user": ("LOGJOBS_DASHBOARD_USER", str),
    "dashboard_password": ("LOGJOBS_DASHBOARD_PASSWORD", str),
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
    dashboard_user: str | None = None
    dashboard_password: str | None = None
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
                raise ConfigError(f"{name} is empty (--{name.replace('_', '-')}, {_SOURCES[name][0]} or the config file)")
        for name in ("roots", "retry_intervals"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(config_file=config_file, **values)

    def push_options(self):
        """The keyword arguments of `queues.push` these settings decide (retry policy, timeout, sizes)."""
        return {"retry_max": self.retry_max, "retry_intervals": self.retry_intervals, "timeout": self.job_timeout,
                "split_bytes": self.split_bytes, "batch_files": self.batch_files, "analyse": self.analysis}

    def redacted_redis_url(self):
        """The Redis URL with any password masked, for messages and logs."""
        return redact_url(self.redis_url)


def redact_url(url):
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _read_config(path):
    parser = configparser.ConfigParser(interpolation=None)  # a "%" is itself (URL-encoded passwords have them)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except configparser.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid INI: {first_line}") from None
    if not parser.has_section(CONFIG_SECTION):
        raise ConfigError(f"config file {path} has no [{CONFIG_SECTION}] section")
    section = parser[CONFIG_SECTION]
    unknown = sorted(set(section) - set(_SOURCES))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r}; known: {', '.join(_SOURCES)}")
    return {name: _parsed(_SOURCES[name][1], text, f"config file {path}") for name, text in section.items()}


def _parsed(parse, text, source):
    """`parse(text)`; its error names where the text came from."""
    try:
        return parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
