"""A push as a user asks for it: one Submission from the command's options or the API's JSON,
refused out of bounds however it is made."""

import dataclasses

import pytest
from click.testing import CliRunner

from logjobs import cli as cli_module
from logjobs import submission as submission_module
from logjobs.exceptions import PushRefused
from logjobs.settings import Settings
from logjobs.submission import Submission


def test_the_command_and_the_api_make_the_same_submission(monkeypatch, tmp_path):
    made = []

    def push(self, *args, **kwargs):
        made.append(self)
        raise PushRefused("stopped here: the test has what it wanted")

    monkeypatch.setattr(submission_module.Submission, "push", push)
    args = [
        "--redis-url",
        "redis://127.0.0.1:1/0",
        "push",
        "--priority=low",
        "--node=web1",
        "--pattern=ERROR",
        "--pattern=WARN",
        "-i",
        "--retries=2",
        "--retry-intervals=5,7",
        "--timeout=60",
        "--split-size=1048576",
        "--batch-files=10",
        "--force",
        "--counts-only",
        str(tmp_path),
    ]
    monkeypatch.setattr(cli_module.connections, "connect", lambda url: None)
    assert "stopped here" in CliRunner().invoke(cli_module.cli, args).output
    body = {
        "paths": [str(tmp_path)],
        "priority": "low",
        "node": "web1",
        "patterns": ["ERROR", "WARN"],
        "ignore_case": True,
        "retries": 2,
        "retry_intervals": [5, 7],
        "timeout": 60,
        "split_size": 1048576,
        "batch_files": 10,
        "force": True,
        "counts_only": True,
    }
    assert made == [Submission.from_json(body)]
    assert Submission.from_json(dict(body, retry_intervals="5, 7")) == made[0]
    settings = made[0].settings(Settings())
    assert (settings.retry_max, settings.retry_intervals, settings.job_timeout) == (2, (5, 7), 60)
    assert (settings.split_bytes, settings.batch_files, settings.analysis) == (1 << 20, 10, False)
    assert made[0].queue == "web1.low"
    # Every option of the command is one of the API's (but --wait and --json, the API's own way).
    options = {
        p.name for p in cli_module.cli.commands["push"].params if p.name not in ("as_json", "wait")
    }
    renamed = {"split_bytes": "split_size"}
    assert {renamed.get(o, o) for o in options} == {f.name for f in dataclasses.fields(Submission)}


def test_a_submission_out_of_bounds_is_refused_however_it_is_made():
    with pytest.raises(PushRefused, match="retries must be from 0 to 100"):
        Submission(paths=("/l",), retries=500)
    with pytest.raises(PushRefused, match="at most 100 intervals"):
        Submission(paths=("/l",), retry_intervals=(1,) * 101)
