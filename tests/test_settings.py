"""Settings resolve in one order: flag > environment > config file > default."""

import pytest

from logjobs import defaults
from logjobs.exceptions import ConfigError
from logjobs.settings import Settings, redact_url


def test_precedence(tmp_path):
    ini = tmp_path / "logjobs.ini"
    ini.write_text(
        "[logjobs]\nredis_url = redis://file:6379/0\ndb = /file.db\nretry_max = 5\n"
        "retry_intervals = 1, 2\n"
    )
    env = {"LOGJOBS_CONFIG": str(ini), "LOGJOBS_DB": "/env.db", "LOGJOBS_RETRY_MAX": "4"}
    s = Settings.load(environ=env, retry_max=2)
    assert (s.redis_url, s.db, s.retry_max, s.retry_intervals) == (
        "redis://file:6379/0",
        "/env.db",
        2,
        (1, 2),
    )
    assert s.job_timeout == defaults.DEFAULT_JOB_TIMEOUT
    assert Settings.load(environ={}) == Settings()


def test_roots_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.load(environ={"LOGJOBS_ROOTS": "logs:/var/log"})
    assert s.roots == (str(tmp_path / "logs"), "/var/log")


@pytest.mark.parametrize(
    "var,value,message",
    [
        ("LOGJOBS_RETRY_MAX", "-1", "retry_max must be at least 0"),
        ("LOGJOBS_JOB_TIMEOUT", "1h", "whole number"),
        (
            "LOGJOBS_JOB_TIMEOUT",
            "0",
            "job_timeout must be at least 1",
        ),  # RQ refuses a job without time
        ("LOGJOBS_BATCH_FILES", "0", "batch_files must be at least 1"),
        ("LOGJOBS_RETRY_INTERVALS", "10,x", "whole seconds"),
    ],
)
def test_bad_values(var, value, message):
    with pytest.raises(ConfigError, match=f"^environment variable {var}: .*{message}"):
        Settings.load(environ={var: value})


@pytest.mark.parametrize("flag", ["redis_url", "db"])
def test_an_empty_redis_url_or_database_is_refused(flag):
    # An empty environment variable counts as unset (as click and rq take it); an empty flag is a
    # mistake.
    assert Settings.load(environ={"LOGJOBS_DB": ""}).db == "./logjobs.db"
    with pytest.raises(ConfigError, match=f"^{flag} is empty"):
        Settings.load(environ={}, **{flag: " "})


def test_config_file_values_are_taken_literally(tmp_path):
    ini = tmp_path / "logjobs.ini"
    ini.write_text(
        "[logjobs]\nredis_url = redis://:p%40ss@h:6379/0\ndashboard_password = 100%%(x)s\n"
    )
    s = Settings.load(config_file=str(ini), environ={})
    assert (s.redis_url, s.dashboard_password) == ("redis://:p%40ss@h:6379/0", "100%%(x)s")


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\xff\xfe[\n", "is not UTF-8 text"),
        (b"[logjobs]\njob_timeout = 0\n", "logjobs.ini: job_timeout must be at least 1"),
        (b"[logjobs]\nbatch_files = 0\n", "logjobs.ini: batch_files must be at least 1"),
        (b"redis_url = x\n", "is not valid INI"),
    ],
)
def test_bad_config_files(tmp_path, content, message):
    ini = tmp_path / "logjobs.ini"
    ini.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        Settings.load(config_file=str(ini), environ={})


def test_redaction():
    assert redact_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"


def test_the_example_config_file_loads():
    import os

    example = os.path.join(os.path.dirname(__file__), "..", "conf", "logjobs.ini")
    s = Settings.load(config_file=example, environ={})
    assert s.redis_url == "redis://127.0.0.1:6379/0" and s.retry_intervals == (10, 30, 60)
    assert s.roots == ("/var/log", "/srv/logs") and s.split_bytes == 64 << 20


@pytest.mark.parametrize(
    "value,message",
    [
        ("short-token", "16 to 4096 characters"),
        ("a token with blanks in it", "only letters, digits"),
        ("ünïcode-token-0123456789", "only letters, digits"),
    ],
)
def test_an_api_token_is_long_and_fit_for_a_header(value, message):
    with pytest.raises(
        ConfigError, match=f"environment variable LOGJOBS_API_TOKEN: api_token .*{message}"
    ):
        Settings.load(environ={"LOGJOBS_API_TOKEN": value})


def test_the_api_token_comes_from_the_config_file_or_the_environment_and_is_not_shown(tmp_path):
    token, other = "t0k3n-for-the-tests-0123456789", "another-token-abcdefghij"
    ini = tmp_path / "logjobs.ini"
    ini.write_text(f"[logjobs]\napi_token = {token}\n")
    assert Settings.load(environ={"LOGJOBS_CONFIG": str(ini)}).api_token == token
    overridden = Settings.load(config_file=str(ini), environ={"LOGJOBS_API_TOKEN": other})
    assert overridden.api_token == other
    assert token not in repr(Settings(api_token=token))
