"""The command line as a user meets it: help, documentation, and one-line errors with exit status
2."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import redis
from click.testing import CliRunner

from logjobs import cli as cli_module
from logjobs.cli import cli
from logjobs.embedded import find_redis_server, free_port
from logjobs.rqsafe import Queue

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "cli.md")
COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "logjobs" in result.output.split("Example:")[1]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_and_option_is_documented(command):
    with open(DOCS) as f:
        doc = f.read()
    section = re.search(rf"^## `logjobs {command}\b.*?(?=^## |\Z)", doc, re.M | re.S)
    assert section, f"docs/cli.md has no '## `logjobs {command}' section"
    for param in cli.commands[command].params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                assert opt in section.group(0), (
                    f"{opt} of `logjobs {command}` is not in docs/cli.md"
                )


def test_python_dash_m_works():
    out = subprocess.run(
        [sys.executable, "-m", "logjobs", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "logjobs" in out.stdout


def one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_push_with_redis_down_names_the_url_and_enqueues_nothing(cluster, tmp_path):
    (tmp_path / "a.log").write_text("ERROR\n")
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "logjobs"),
            "--redis-url",
            url,
            "push",
            str(tmp_path / "a.log"),
        ],
        capture_output=True,
        text=True,
        env=cluster.env,
        timeout=60,
    )
    one_line_error(result, "cannot reach Redis at redis://:***@127.0.0.1")
    assert "secret" not in result.stderr
    # Sentinels that are not there: redis-py's message held the repr of every sentinel client.
    url = f"redis+sentinel://127.0.0.1:{free_port()}/svc/0"
    result = cluster.run("--redis-url", url, "push", str(tmp_path / "a.log"))
    one_line_error(
        result, f"cannot reach Redis at {url}: no sentinel there names a master for the service"
    )
    assert "<redis." not in result.stderr


def test_redis_credentials_and_database_are_checked_in_one_line(cluster, conn, tmp_path):
    (tmp_path / "a.log").write_text("ERROR\n")
    port = cluster.server.port
    one_line_error(
        cluster.run(
            "--redis-url", f"redis://127.0.0.1:{port}/abc", "push", str(tmp_path / "a.log")
        ),
        f"bad Redis URL 'redis://127.0.0.1:{port}/abc': the database must be a number, not 'abc'",
    )
    conn.config_set("requirepass", "pw")
    one_line_error(
        cluster.run("--redis-url", f"redis://127.0.0.1:{port}/0", "push", str(tmp_path / "a.log")),
        f"Redis at redis://127.0.0.1:{port}/0 wants a password, and the URL gives none",
    )
    one_line_error(
        cluster.run(
            "--redis-url", f"redis://:nope@127.0.0.1:{port}/0", "push", str(tmp_path / "a.log")
        ),
        f"Redis at redis://:***@127.0.0.1:{port}/0 refused the credentials",
    )


def test_a_redis_that_never_answers_is_reported_in_seconds(cluster, tmp_path):
    # A stopped or hung Redis, or another service on its port: connections are taken, nothing is
    # answered.
    (tmp_path / "a.log").write_text("ERROR\n")
    held = []

    def hold(server):
        with contextlib.suppress(OSError):  # closed at the end
            while True:
                held.append(server.accept()[0])

    with socket.create_server(("127.0.0.1", 0)) as silent:
        threading.Thread(target=hold, args=(silent,), daemon=True).start()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        for args in (["push", str(tmp_path / "a.log")], ["mirror", "--once"]):
            # The timeout: a client's nested retries took 488 s to say it.
            one_line_error(
                cluster.run("--redis-url", url, *args, timeout=30),
                f"cannot reach Redis at {url}",
                "Timeout",
            )
    for peer in held:
        peer.close()


def test_usage_errors_are_one_line_too(cluster):
    one_line_error(
        cluster.run("push", "--priority", "urgent", "x.log"),
        "Invalid value for '--priority'",
        "(see `logjobs push --help`)",
    )
    one_line_error(cluster.run("push"), "Missing argument 'PATH...'")
    one_line_error(cluster.run("report", "--since", "yesterday"), "bad time 'yesterday'")
    one_line_error(cluster.run("nosuch"), "No such command 'nosuch'", "(see `logjobs --help`)")
    one_line_error(
        cluster.run("--bogus", "status"), "No such option", "--bogus"
    )  # its quoting varies by click
    alone = cluster.run()  # the help, as click gives it
    assert alone.returncode == 2 and alone.stderr.startswith("Usage: logjobs [OPTIONS] COMMAND")


def test_refused_push_enqueues_nothing(cluster, tmp_path, conn):
    (tmp_path / "a.log").write_text("ERROR\n")
    one_line_error(
        cluster.run("push", str(tmp_path / "a.log"), str(tmp_path / "missing.log")),
        "no such file or directory",
        "missing.log",
    )
    one_line_error(cluster.run("push", str(tmp_path / "*.nope")), "no file matches")
    # A list written with CRLF line ends: the name shown quoted, so the "\r" is seen.
    one_line_error(
        cluster.run("push", "-", input=f"{tmp_path / 'a.log'}\r\n"),
        f"no such file or directory: {ascii(str(tmp_path / 'a.log') + chr(13))} (path from stdin)",
    )
    cluster.env["LOGJOBS_ROOTS"] = "/var/log"
    one_line_error(cluster.run("push", str(tmp_path / "a.log")), "outside the allowed roots")
    assert all(Queue(q, connection=conn).count == 0 for q in ("high", "default", "low"))
    assert not conn.exists("logjobs:events")


def test_stdin_paths(cluster, tmp_path):
    for name in ("a.log", "b.log"):
        (tmp_path / name).write_text("ERROR\n")
    result = cluster.run(
        "push", "--json", "-", input=f"{tmp_path / 'a.log'}\n{tmp_path / 'b.log'}\n", check=True
    )
    assert '"parts": 1' in result.stdout and "b.log" in result.stdout


def test_bad_settings_are_one_line_errors(cluster, tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[logjobs]\nretry_intervals = soon\n")
    one_line_error(
        cluster.run("--config", str(bad), "status"), "retry_intervals must be whole seconds"
    )
    bad.write_text("[logjobs]\ncolour = blue\n")
    one_line_error(cluster.run("--config", str(bad), "status"), "unknown setting 'colour'")
    one_line_error(
        cluster.run("--config", str(tmp_path / "none.ini"), "status"), "cannot read config file"
    )
    one_line_error(cluster.run("--redis-url", "http://x", "push", str(bad)), "Redis URL")


def test_a_reader_that_goes_away_ends_the_output_quietly(cluster, tmp_path):
    # `logjobs report | head -1`: the pipe is closed before logjobs writes; as grep, it stops
    # without a word.
    (tmp_path / "a.log").write_text("ERROR\n")
    cluster.worker()
    cluster.run("push", "--wait", str(tmp_path / "a.log"), check=True)
    cluster.run("mirror", "--once", check=True)
    for args in (["report"], ["report", "--json"], ["status"], ["show", str(tmp_path / "a.log")]):
        proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "logjobs"), *args],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdout.close()
        assert proc.wait(60) == 128 + signal.SIGPIPE, args
        assert proc.stderr.read() == b"", args


def test_a_reader_that_leaves_mid_output_ends_it_as_a_broken_pipe(cluster, tmp_path):
    # Under PYTHONUNBUFFERED, Python dropped the rest of a write the pipe took only part of, and
    # exited 0: a script could not tell a cut report from a whole one.
    (tmp_path / "logs").mkdir()
    for i in range(300):
        (tmp_path / "logs" / f"file-with-a-long-name-{i:04}.log").write_text("ERROR\n")
    cluster.worker()
    cluster.run("push", "--wait", str(tmp_path / "logs"), check=True)
    cluster.run("mirror", "--once", check=True)
    command, env = (
        [os.path.join(os.path.dirname(sys.executable), "logjobs"), "report", "--json"],
        {**cluster.env, "PYTHONUNBUFFERED": "1"},
    )
    whole = subprocess.run(command, env=env, capture_output=True, check=True).stdout
    assert len(json.loads(whole)) == 300 and len(whole) > 1 << 17  # more than a pipe holds
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(10) == whole[:10]
    proc.stdout.close()
    assert proc.wait(60) == 128 + signal.SIGPIPE
    assert proc.stderr.read() == b""


def test_report_text_is_one_line_per_file_whatever_its_name_and_patterns(cluster, tmp_path):
    p = tmp_path / "two\nlines.log"
    p.write_text("x\ny\nz\n")
    cluster.worker()
    cluster.run("push", "--wait", "--pattern", "x\ny", str(p), check=True)  # grep -F: x or y
    cluster.run("mirror", "--once", check=True)
    header, row, totals = cluster.run("report", check=True).stdout.splitlines()
    assert row.startswith("finished") and "'x\\ny'=2" in row and row.endswith(ascii(str(p)))
    assert totals == "total: 1 file(s) (finished 1); counts 'x\\ny'=2"


def test_show_finds_a_file_by_a_relative_name_or_its_job_id(cluster, tmp_path):
    (tmp_path / "a.log").write_text("ERROR\nERROR x\n")
    cluster.worker()
    job_id = cluster.json("push", "--json", "--wait", str(tmp_path / "a.log"))["enqueued"][0][
        "job_id"
    ]
    cluster.run("mirror", "--once", check=True)
    logjobs = os.path.join(os.path.dirname(sys.executable), "logjobs")
    by_name = subprocess.run(
        [logjobs, "show", "a.log"], cwd=tmp_path, env=cluster.env, capture_output=True, text=True
    )
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout == cluster.run("show", job_id, check=True).stdout
    lines = by_name.stdout.splitlines()
    assert lines[0] == f"path:      {tmp_path / 'a.log'}"
    assert "counts:    ERROR=2" in lines and "error:     -" in lines
    # A report that filters every row out says so, not that nothing was pushed.
    assert cluster.run("report", "--failed", check=True).stdout == "no file matches --failed\n"


def test_report_before_any_mirror_says_what_to_do(cluster):
    one_line_error(cluster.run("report"), "no status database", "logjobs mirror")
    one_line_error(
        cluster.run("--db", "sqlite:///:memory:", "report"), "has no tables yet", "logjobs mirror"
    )


def test_a_status_database_that_cannot_be_opened_is_a_one_line_error(cluster, tmp_path):
    not_a_database = tmp_path / "status.db"
    not_a_database.write_text("not a database\n" * 100)
    for args in (["report"], ["status"], ["show", "/x.log"], ["top"], ["mirror", "--once"]):
        one_line_error(
            cluster.run("--db", str(not_a_database), *args),
            "cannot open status database",
            "file is not a database",
        )
    assert not_a_database.read_text() == "not a database\n" * 100
    # A server that refuses: its message spans lines, and the URL's password must not show.
    url = f"postgresql://logjobs:hunter2@127.0.0.1:{free_port()}/logjobs"
    for args in (["report"], ["mirror", "--once"]):
        result = cluster.run("--db", url, *args)
        one_line_error(result, "cannot open status database postgresql://logjobs:***@127.0.0.1:")
        assert "hunter2" not in result.stderr


def test_status_json_shape(cluster, tmp_path):
    (tmp_path / "a.log").write_text("ERROR\n")
    cluster.worker()
    cluster.run("push", "--priority", "high", "--wait", str(tmp_path / "a.log"), check=True)
    cluster.run("mirror", "--once", check=True)
    doc = cluster.json("status", "--json")
    assert doc["jobs"]["finished"] == 1 and set(doc["jobs"]) >= {
        "queued",
        "started",
        "finished",
        "failed",
    }
    assert doc["queues"] == {"high": 1, "default": 0, "low": 0}
    assert doc["workers"] and doc["waiting"] == {"high": 0, "default": 0, "low": 0}


def test_status_says_so_and_exits_2_when_redis_refuses_or_is_away(cluster, tmp_path):
    """The database's counts, then the reason Redis gave nothing: exit status 2 (issue 21: it
    was 0 with wrong credentials)."""
    cluster.run("mirror", "--once", check=True)
    port = free_port()
    locked = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + ["--requirepass", "s3cret", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, password="s3cret")
        cluster.wait_for(lambda: _answers(client), what="the locked Redis")
        for url, said in (
            (f"redis://:wrong@127.0.0.1:{port}/0", "refused the credentials"),
            (f"redis://127.0.0.1:{free_port()}/0", "cannot reach Redis"),
        ):
            out = cluster.run("--redis-url", url, "status")
            assert out.returncode == 2, (url, out.stdout, out.stderr)
            assert out.stdout.startswith("files:   queued 0") and said in out.stdout, out.stdout
            assert "wrong" not in out.stdout + out.stderr  # the password stays out of sight
            doc = json.loads(cluster.run("--redis-url", url, "status", "--json").stdout)
            assert said in doc["redis_error"] and doc["jobs"]["finished"] == 0
    finally:
        locked.kill()
        locked.wait()


def _answers(client):
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def test_a_push_nothing_will_run_says_so(cluster, tmp_path):
    """No worker on the queue, no mirror: the push stands (exit 0), with a warning for each
    (issue 21: it said only "enqueued")."""
    (tmp_path / "a.log").write_text("ERROR\n")
    out = cluster.run("push", "--priority", "low", str(tmp_path / "a.log"))
    assert out.returncode == 0 and out.stdout.startswith("enqueued 1 file(s) into low")
    warnings = out.stderr.splitlines()
    assert len(warnings) == 2, out.stderr
    assert warnings[0].startswith("logjobs: warning: no worker reads queue low at redis://")
    assert warnings[1].startswith("logjobs: warning: no `logjobs mirror` is running")
    assert "(`rq worker high default low`, as README.md shows)" in warnings[0]
    # A node's queue: the worker to start is that node's.
    (tmp_path / "n.log").write_text("ERROR\n")
    out = cluster.run("push", "--node", "web3", str(tmp_path / "n.log"))
    assert "(`logjobs worker --node web3` on web3)" in out.stderr, out.stderr
    # --json stays one JSON document on stdout.
    (tmp_path / "b.log").write_text("ERROR\n")
    doc = json.loads(cluster.run("push", "--json", str(tmp_path / "b.log"), check=True).stdout)
    assert doc["enqueued"][0]["path"] == str(tmp_path / "b.log")
    # With a worker reading it and a mirror running: quiet.
    cluster.worker(name="reader"), cluster.mirror()
    cluster.wait_for(lambda: _quiet_push(cluster, tmp_path), what="a push without warnings")


def _quiet_push(cluster, tmp_path):
    """True if a push said nothing on stderr (the worker and the mirror may still be starting)."""
    return cluster.run("push", "--force", str(tmp_path / "a.log"), check=True).stderr == ""


def test_show_says_what_a_scan_read(cluster, tmp_path):
    """`show` in text says all a file's row holds; a scan that continued an earlier one reads as
    one range and one push (issue 21: "2 byte ranges", and `queued` twice)."""
    p = tmp_path / "a.log"
    p.write_bytes(b"2024-05-01 12:00:00,000 ERROR x: y\n" * 1000)
    cluster.worker(), cluster.mirror()
    cluster.run("push", "--wait", str(p), check=True)
    cluster.wait_for(lambda: cluster.report()[str(p)]["status"] == "finished", what="the row")
    with open(p, "ab") as f:
        f.write(b"2024-05-01 12:01:00,000 INFO x: z\n" * 400)
    doc = cluster.json("push", "--wait", "--json", str(p))
    assert doc["enqueued"][0]["scan"] == "append"
    cluster.wait_for(lambda: cluster.report()[str(p)]["lines"] == 1400, what="the appended scan")
    shown = dict(
        line.split(":", 1)
        for line in cluster.run("show", str(p), check=True).stdout.splitlines()
        if not line.startswith(" ") and line != "history:"
    )
    assert {
        k: v.strip()
        for k, v in shown.items()
        if k in ("status", "patterns", "counts", "levels", "format", "lines", "bytes", "ranges")
    } == {
        "status": "finished",
        "patterns": "ERROR",
        "counts": "ERROR=1000",
        "levels": "INFO=400 ERROR=1000",
        "format": "log4j",
        "lines": "1400",
        "bytes": f"{p.stat().st_size}; this scan read the last 13600",
        "ranges": "1",
    }
    history = cluster.json("show", "--json", str(p))["history"]
    assert [h["state"] for h in history] == ["queued", "started", "finished"] * 2


def test_selftest_with_chaos_passes_on_a_healthy_deployment(cluster, conn):
    cluster.mirror()
    result = cluster.run("selftest", "--chaos", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 6 and all(line.startswith("[PASS]") for line in lines), lines
    # Its killed workers are not left listed as alive.
    assert not [
        w
        for w in cluster.json("status", "--json")["workers_alive"]
        if w["name"].startswith("selftest-")
    ]
    # Nor anything else: no probe's row, no queue, registry or job of its own.
    assert not [r for r in cluster.json("report", "--json") if "logjobs-selftest-" in r["path"]]
    assert not [q for q in conn.smembers("rq:queues") if b"selftest" in q]
    assert not list(conn.scan_iter(match="rq:*selftest*"))
    origins = [conn.hget(key, "origin") or b"" for key in conn.scan_iter(match="rq:job:*")]
    assert not [origin for origin in origins if b"selftest" in origin]


def test_selftest_fails_without_a_mirror(cluster):
    result = cluster.run("selftest", timeout=120)
    assert result.returncode == 1
    assert "[FAIL] a mirror is running" in result.stdout
    assert "[FAIL] the mirror wrote the probes' rows" in result.stdout
    assert "[PASS] probe files counted like grep -c" in result.stdout


def test_status_watch_prints_plain_lines_off_a_terminal(cluster, tmp_path):
    (tmp_path / "a.log").write_text("ERROR\n")
    cluster.worker()
    cluster.run("push", "--wait", str(tmp_path / "a.log"), check=True)
    cluster.run("mirror", "--once", check=True)
    proc = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "logjobs"),
            "status",
            "--watch",
            "--interval",
            "0.3",
        ],
        env=cluster.env,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_default,
    )
    lines = [proc.stdout.readline() for _ in range(3)]  # three redraws, however slow the machine
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    lines = [line.strip() for line in lines + out.splitlines() if line.strip()]
    assert proc.returncode == 0 and len(lines) >= 3
    assert all(
        re.match(
            r"\d\d:\d\d:\d\d queued=0 scheduled=0 started=0 finished=1 failed=0 moved=0 canceled=0 "
            r"rate=",
            line,
        )
        for line in lines
    )


def ctrl_c_default():
    """In the child: SIGINT as at a terminal (a suite started in the background has it ignored,
    which a child inherits, and Python then raises no KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_push_wait_says_the_jobs_go_on(cluster, tmp_path):
    (tmp_path / "a.log").write_text("ERROR\n")
    proc = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "logjobs"),
            "push",
            "--wait",
            str(tmp_path / "a.log"),
        ],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_default,
    )
    assert proc.stdout.readline().startswith("enqueued 1 file(s)")  # no worker yet: it waits
    time.sleep(1)  # into the wait (a Ctrl-C before it is a plain "interrupted")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert err.splitlines()[-1] == (
        "logjobs: stopped waiting; the pushed files stay queued "
        "(`logjobs status` and `logjobs report` follow them)"
    )
    assert "Traceback" not in err
    cluster.worker()
    cluster.wait_for(
        lambda: cluster.report()[str(tmp_path / "a.log")]["status"] == "finished",
        what="the pushed file to finish after all",
    )


def test_push_wait_reports_progress_as_plain_lines_off_a_terminal(cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(3):
        (logs / f"{i}.log").write_text("ERROR\n")
    cluster.worker()
    result = cluster.run("push", "--wait", str(logs), check=True)
    assert re.search(r"^scanning: 3/3 files, \d+ files/s$", result.stderr, re.M), result.stderr
    assert "finished 3, failed 0" in result.stdout


@pytest.mark.slow
def test_demo_runs_end_to_end_on_its_own_redis(tmp_path):
    """What `bin/demo` runs (it sets up .venv, then this), on a smaller big log: its own
    redis-server, two rq workers, the mirror; exit 0 when every file finished; the sample logs
    removed after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGJOBS_", "RQ_"))}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "logjobs.demo", "--big-mb", "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.splitlines()[-1]
    assert (
        last.startswith("demo: every file finished in ") and "(the sample logs are removed" in last
    )
    work = next(tmp_path.glob("logjobs-demo-*"))
    assert (work / "status.db").exists() and not (work / "logs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_demo_stopped_midway_leaves_no_process_behind(tmp_path, sig):
    """Ctrl-C, SIGTERM, even SIGKILL of the demo while its workers scan: nothing it started
    (redis-server, workers and their work-horses, the mirror, a `push --wait`) lives on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGJOBS_", "RQ_"))}
    demo = subprocess.Popen(
        [sys.executable, "-m", "logjobs.demo", "--big-mb", "400", "--dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started, seen = time.monotonic(), set()
    try:
        for line in demo.stdout:  # until the big push waits on the workers
            seen |= {p.pid for p in psutil.Process(demo.pid).children(recursive=True)}
            if line.startswith("enqueued") and "big.log" not in line and len(seen) >= 4:
                break
            assert time.monotonic() - started < 240, "the demo never got to its pushes"
        time.sleep(1.5)
        seen |= {p.pid for p in psutil.Process(demo.pid).children(recursive=True)}
        names = {psutil.Process(pid).name() for pid in seen if psutil.pid_exists(pid)}
        assert any("redis-server" in n for n in names), names
        demo.send_signal(sig)
        rest = demo.stdout.read()
        demo.wait(60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    if sig != signal.SIGKILL:  # said in a line, not a traceback
        assert demo.returncode == 130 and "Traceback" not in rest, rest
        assert "demo: interrupted; stopped its Redis, workers and mirror" in rest

    def alive():
        return [
            pid
            for pid in seen
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]

    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(), [psutil.Process(pid).cmdline() for pid in alive()]


@pytest.mark.parametrize(
    "items", [[], [{"path": "/a\nb", "counts": {}}], [{"a": [1, {"b": None}]}, {}, {"c": "é"}]]
)
def test_a_json_list_written_an_item_at_a_time_reads_as_one(capsys, items):
    # `report --json` writes its rows as the database gives them, not all at once (8 KB a row in
    # memory).
    cli_module._echo_json_list(iter(items))
    assert capsys.readouterr().out == json.dumps(items, indent=2) + "\n"
