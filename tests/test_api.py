"""The dashboard's HTTP API: who may call it (token, password, CSRF), its one-line JSON refusals,
pushes that real workers scan, and answers byte for byte the commands' --json."""

import dataclasses
import gzip
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import redis

from logjobs.defaults import FILES_KEY
from logjobs.embedded import free_port
from logjobs.rqsafe import Queue
from logjobs.web import api

from helpers import BIN, grep_count
from test_web import (
    PASSWORD,
    USER,
    app_for,
    basic,
    csrf_field,
    history_of_four_files,
    seed,
    wait_for_http,
)

TOKEN = "t0k3n-for-the-tests-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def seeded(tmp_path):
    """A status database of four files (test_web's)."""
    path = tmp_path / "status.db"
    seed(path, history_of_four_files(time.time() - 60))
    return path


def refusal(reply, status, *fragments):
    """The reply is `status` with one JSON line {"error": ...} saying each of `fragments`."""
    assert reply.status_code == status, (reply.status_code, reply.get_data(as_text=True))
    assert reply.mimetype == "application/json"
    doc = json.loads(reply.get_data())
    assert "error" in doc and "\n" not in doc["error"] and "Traceback" not in doc["error"], doc
    for fragment in fragments:
        assert fragment in doc["error"], (fragment, doc["error"])
    return doc


# -- who may call it -----------------------------------------------------------------------------


def test_the_token_opens_the_api_and_only_the_api(seeded):
    client = app_for(seeded, NO_REDIS, api_token=TOKEN).test_client()
    for headers, said in (
        ({}, "authentication required: send Authorization: Bearer"),
        ({"Authorization": "Bearer wrong-token-0123456789"}, "the API token is not this"),
        (basic(), "authentication required: send Authorization: Bearer"),  # no password here
    ):
        reply = client.get("/api/v1/report", headers=headers)
        refusal(reply, 401, said)
        assert reply.headers.getlist("WWW-Authenticate") == ['Bearer realm="logjobs"']
        client.application.extensions["logjobs.backoff"].failures.clear()
    reply = client.get("/api/v1/report", headers=BEARER)
    assert reply.status_code == 200 and [r["path"] for r in reply.json] == [
        "/l/a.log",
        "/l/b.log",
        "/l/c.log",
        "/l/d.log",
    ]
    assert reply.headers["Cache-Control"] == "no-store"
    # The pages are as they were without a token: open on this machine's names, and nowhere else.
    assert client.get("/files").status_code == 200
    reply = client.get("/api/v1/report", headers=dict(BEARER, Host="attacker.example"))
    refusal(reply, 421, "does not answer to the name")


def test_with_a_password_the_api_takes_it_or_the_token(seeded):
    client = app_for(
        seeded, NO_REDIS, dashboard_user=USER, dashboard_password=PASSWORD, api_token=TOKEN
    ).test_client()
    reply = client.get("/api/v1/files?path=/l/a.log")
    refusal(reply, 401)
    assert reply.headers.getlist("WWW-Authenticate") == [
        'Bearer realm="logjobs"',
        'Basic realm="logjobs", charset="UTF-8"',
    ]
    for headers in (basic(), BEARER):
        reply = client.get("/api/v1/files?path=/l/a.log", headers=headers)
        assert reply.status_code == 200 and reply.json["counts"] == {"ERROR": 5, "FATAL": 1}
    # The token opens the API only: a page wants the password.
    assert client.get("/files", headers=BEARER).status_code == 401
    assert client.get("/files", headers=basic()).status_code == 200


def test_without_a_token_the_api_is_where_the_pages_are(seeded):
    open_client = app_for(seeded, NO_REDIS).test_client()
    assert open_client.get("/api/v1/top").status_code == 200
    refusal(open_client.get("/api/v1/top", headers=BEARER), 401, "no API token", "api_token")
    locked = app_for(seeded, NO_REDIS, dashboard_user=USER, dashboard_password=PASSWORD)
    client = locked.test_client()
    refusal(client.get("/api/v1/top"), 401)
    refusal(client.get("/api/v1/top", headers=BEARER), 401)
    assert client.get("/api/v1/top", headers=basic()).status_code == 200


@pytest.mark.parametrize(
    "settings",
    [{}, {"dashboard_user": USER, "dashboard_password": PASSWORD, "api_token": TOKEN}],
    ids=["loopback", "password-and-token"],
)
def test_a_post_needs_the_csrf_token_unless_it_came_with_the_api_token(seeded, settings):
    """Past the CSRF check a push meets the Redis no one listens at: 503 says it got that far."""
    app = app_for(seeded, NO_REDIS, **settings)
    client, stranger = app.test_client(), app.test_client()
    auth = basic() if settings else {}
    token = csrf_field(client.get("/failures", headers=auth).get_data(as_text=True))
    other = csrf_field(stranger.get("/failures", headers=auth).get_data(as_text=True))
    push = {"paths": [str(seeded)]}
    for headers in ({}, {"X-CSRFToken": "forged"}, {"X-CSRFToken": other}):
        reply = client.post("/api/v1/push", json=push, headers=dict(auth, **headers))
        refusal(reply, 400, "CSRF", "Bearer <api_token>")
    reply = client.post("/api/v1/push", json=push, headers=dict(auth, **{"X-CSRFToken": token}))
    refusal(reply, 503, "cannot reach Redis at redis://127.0.0.1:1/0")
    if settings:  # a script: no session, no CSRF token, the API token
        reply = app.test_client().post("/api/v1/push", json=push, headers=BEARER)
        refusal(reply, 503, "cannot reach Redis")


def test_wrong_tokens_meet_the_growing_wait_of_wrong_passwords(seeded):
    clock = [0.0]
    app = app_for(seeded, NO_REDIS, api_token=TOKEN)
    app.extensions["logjobs.backoff"].clock = lambda: clock[0]
    client = app.test_client()

    def call(token):
        return client.get("/api/v1/top", headers={"Authorization": f"Bearer {token}"})

    assert [call("wrong").status_code for _ in range(5)] == [401] * 5
    assert call("wrong").status_code == 401
    reply = call(TOKEN)  # the sixth wrong one started the wait: even the right one waits
    refusal(reply, 429, "try again later")
    assert reply.headers["Retry-After"] == "2"
    clock[0] += 1.1
    assert call(TOKEN).status_code == 200 and call("wrong").status_code == 401  # count cleared


# -- refusals ------------------------------------------------------------------------------------


BAD_PUSHES = [
    ({"paths": ["/l"], "colour": "red"}, "unknown option 'colour'; the options: paths, priority"),
    ({"priority": "high"}, "no paths given"),
    ({"paths": []}, "no paths given"),
    ({"paths": "/var/log"}, "paths must be a list of strings; got a string"),
    ({"paths": [3]}, "each of paths must be a string; got a number 3"),
    ({"paths": ["var/log"]}, "'var/log' is not an absolute path"),
    ({"paths": ["/l"], "priority": "urgent"}, "unknown priority 'urgent'"),
    ({"paths": ["/l"], "node": "-x"}, "bad node name '-x'"),
    ({"paths": ["/l"], "patterns": "ERROR"}, "patterns must be a list of strings"),
    ({"paths": ["/l"], "patterns": ["\ud800"]}, "lone surrogate"),
    ({"paths": ["/l"], "ignore_case": "yes"}, "ignore_case must be true or false"),
    ({"paths": ["/l"], "retries": 101}, "retries must be from 0 to 100; got 101"),
    ({"paths": ["/l"], "retries": True}, "retries must be a whole number; got a boolean True"),
    ({"paths": ["/l"], "timeout": 0}, "timeout must be from 1 to"),
    ({"paths": ["/l"], "timeout": 1.5}, "timeout must be a whole number; got a number 1.5"),
    ({"paths": ["/l"], "split_size": 1 << 41}, "split_size must be from 0 to 1099511627776"),
    ({"paths": ["/l"], "batch_files": 0}, "batch_files must be from 1 to 100000"),
    ({"paths": ["/l"], "retry_intervals": "10,x"}, "retry_intervals must be whole seconds"),
    ({"paths": ["/l"], "retry_intervals": [10, -1]}, "retry_intervals cannot be negative"),
    ({"paths": ["/l"], "retry_intervals": {"a": 1}}, "retry_intervals must be a string like"),
    ({"paths": ["/l"], "wait": 1}, "wait must be true or false"),
    ([{"paths": ["/l"]}], "the body must be a JSON object"),
]


@pytest.mark.parametrize("body,fragment", BAD_PUSHES)
def test_a_bad_push_is_refused_whole_in_one_line(seeded, body, fragment):
    client = app_for(seeded, NO_REDIS, api_token=TOKEN).test_client()
    refusal(client.post("/api/v1/push", json=body, headers=BEARER), 400, fragment)


def test_a_body_that_is_no_json_object_is_refused(seeded):
    client = app_for(seeded, NO_REDIS, api_token=TOKEN).test_client()

    def post(data, content_type="application/json"):
        return client.post("/api/v1/push", data=data, content_type=content_type, headers=BEARER)

    refusal(post('{"paths": ["/l"]'), 400, "the body is not JSON")
    refusal(post(b'{"paths": ["\xff"]}'), 400, "the body is not JSON")
    refusal(post("[" * 100_000), 400, "the body is not JSON")  # too deep for the parser
    refusal(post('{"paths": ["/l"]}', "application/x-www-form-urlencoded"), 415, "Content-Type")
    refusal(post(json.dumps({"paths": ["/l" * 600_000]})), 413, "over 1024 KiB")


BAD_READS = [
    ("/api/v1/status?verbose=1", 400, "unknown option 'verbose': /api/v1/status takes none"),
    ("/api/v1/report?failed=maybe", 400, "failed must be true or false, not 'maybe'"),
    ("/api/v1/report?path=/l/a&path=/l/b", 400, "path given more than once"),
    ("/api/v1/report?path=l/*.log", 400, "bad glob 'l/*.log'"),
    ("/api/v1/report?path=/l/%00", 400, "bad glob"),
    ("/api/v1/report?since=yesterday", 400, "since: bad time 'yesterday'"),
    ("/api/v1/top?until=2024-13-01", 400, "until: bad time"),
    ("/api/v1/top?level=loud", 400, "unknown level 'LOUD'"),
    ("/api/v1/top?limit=0", 400, "limit must be a whole number from 1"),
    ("/api/v1/top?limit=-3", 400, "limit must be"),
    ("/api/v1/files", 400, "give path=<absolute path> or job_id=<id>"),
    ("/api/v1/files?path=/l/a.log&job_id=j-a", 400, "give path"),
    ("/api/v1/files?path=a.log", 400, "'a.log' is not absolute"),
    ("/api/v1/files?path=/l/none.log", 404, "no scan of /l/none.log in the status database"),
    ("/api/v1/files?job_id=lj-none", 404, "no scan of lj-none"),
    ("/api/v1/cancel", 405, "/api/v1/cancel takes POST, not GET"),
    ("/api/v1/nothing", 404, "no such endpoint: /api/v1/nothing"),
    ("/api/v2/report", 404, "no such endpoint"),
    ("/api/v1/push", 405, "/api/v1/push takes POST, not GET"),
]


@pytest.mark.parametrize("url,status,fragment", BAD_READS)
def test_a_bad_read_is_refused_in_one_line(seeded, url, status, fragment):
    client = app_for(seeded, NO_REDIS, api_token=TOKEN).test_client()
    refusal(client.get(url, headers=BEARER), status, fragment)


def test_what_the_server_cannot_reach_is_a_503(tmp_path, seeded):
    client = app_for(tmp_path / "none.db", NO_REDIS, api_token=TOKEN).test_client()
    for url in ("/api/v1/status", "/api/v1/report", "/api/v1/files?path=/l/a.log", "/api/v1/top"):
        reply = client.get(url, headers=BEARER)
        refusal(reply, 503, "no status database at", "run `logjobs mirror` first")
        assert reply.headers["Retry-After"] == "5"
    assert not (tmp_path / "none.db").exists()
    client = app_for(seeded, NO_REDIS, api_token=TOKEN).test_client()
    reply = client.post("/api/v1/push", json={"paths": [str(seeded)]}, headers=BEARER)
    refusal(reply, 503, "cannot reach Redis at redis://127.0.0.1:1/0")
    reply = client.get("/api/v1/status", headers=BEARER)  # the database's counts, and why not all
    doc = refusal(reply, 503, "cannot reach Redis at redis://127.0.0.1:1/0")
    assert doc["jobs"]["finished"] == 2 and doc["redis_error"] == doc["error"]


def test_an_internal_error_is_json_without_a_traceback(seeded, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("something logjobs did not expect")

    monkeypatch.setattr(api.queries, "top", broken)
    client = app_for(seeded, NO_REDIS, api_token=TOKEN).test_client()
    reply = client.get("/api/v1/top", headers=BEARER)
    refusal(reply, 500, "internal error: RuntimeError (the dashboard's log says where)")
    assert "something logjobs did not expect" in caplog.text  # the log has it, the client not


# -- real pushes, real workers -------------------------------------------------------------------


def call(base, path, body=None, headers=BEARER, timeout=120):
    """(status, body bytes) of an HTTP request to the dashboard at `base`, as curl makes it."""
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers=dict(headers, **({"Content-Type": "application/json"} if body is not None else {})),
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def grep_i(path, pattern):
    """`LC_ALL=C grep -a -c -i -F`: what a push with ignore_case counts."""
    out = subprocess.run(
        ["grep", "-a", "-c", "-i", "-F", "--", pattern, str(path)],
        capture_output=True,
        env={"LC_ALL": "C", "PATH": os.environ["PATH"]},
    )
    return int(out.stdout)


@dataclasses.dataclass
class Live:
    """A live pipeline's dashboard: its URL, and the logs' folder (its roots) and files."""

    base: str
    root: str
    api_log: str
    counts: dict  # {path: lines holding ERROR}


@pytest.fixture
def dashboard(cluster, tmp_path):
    """A worker, the mirror and `logjobs dashboard` with an API token, the logs' folder its roots.
    The logs: plain (CRLF, NUL, no last newline), gzipped, in folders."""
    root = tmp_path / "logs"
    (root / "app").mkdir(parents=True)
    api_log = root / "app" / "api.log"
    api_log.write_bytes(
        b"2024-05-01 12:00:01,100 ERROR api: upstream 10.0.0.7 timed out\n" * 7
        + b"2024-05-01 12:01:01,100 INFO api: ok\r\n" * 3
        + b"2024-05-01 12:02:01,100 error api: lower \x00 case\n" * 2
        + b"2024-05-01 12:03:01,100 FATAL api: ERROR ERROR twice, counted once"
    )
    archive = root / "app" / "old.log.gz"
    archive.write_bytes(gzip.compress(b"2024-05-01 11:00:00,000 ERROR api: archived\n" * 5))
    (root / "web.log").write_bytes(b"ERROR x\nWARN y\n" * 40)
    counts = {str(api_log): grep_count(api_log), str(archive): 5, str(root / "web.log"): 40}
    assert counts[str(api_log)] == 8
    cluster.env["LOGJOBS_ROOTS"] = str(root)
    cluster.worker()
    cluster.mirror()
    port = free_port()
    proc = cluster.spawn(
        [os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)],
        "dashboard",
        env=dict(cluster.env, LOGJOBS_API_TOKEN=TOKEN),
    )
    return Live(wait_for_http(port, proc), str(root), str(api_log), counts)


def test_a_push_through_the_api_is_scanned_and_every_answer_is_the_commands(cluster, dashboard):
    live = dashboard
    status, body = call(live.base, "/api/v1/push", {"paths": [live.root + "/"], "wait": True})
    assert status == 200, body
    doc = json.loads(body)
    assert doc["queue"] == "default" and doc["warnings"] == []
    assert sorted(e["path"] for e in doc["enqueued"]) == sorted(live.counts)
    assert {o["path"]: (o["status"], o["counts"]) for o in doc["outcome"]} == {
        path: ("finished", {"ERROR": n}) for path, n in live.counts.items()
    }

    # Once the mirror has it all, each answer is what the command prints, byte for byte.
    cluster.wait_for(
        lambda: [r["status"] for r in cluster.report().values()] == ["finished"] * 3,
        what="every row finished",
    )
    since, until = "2024-05-01T11:30", "2024-05-01T12:02"
    glob = live.root + "/app/*"
    pairs = [
        ("report", {}, ["--json"]),
        ("report", {"failed": ""}, ["--json", "--failed"]),
        ("report", {"path": glob}, ["--json", "--path", glob]),
        (
            "report",
            {"since": since, "until": until},
            ["--json", "--since", since, "--until", until],
        ),
        ("status", {}, ["--json"]),
        ("files", {"path": live.api_log}, ["--json", live.api_log]),
        ("top", {}, ["--json"]),
        (
            "top",
            {"level": ["error", "FATAL"], "limit": 1, "path": "*.log", "since": since},
            ["--json", "--level", "error", "--level", "FATAL", "-n", "1", "--path", "*.log"]
            + ["--since", since],
        ),
    ]
    for endpoint, query, args in pairs:
        url = f"/api/v1/{endpoint}?{urllib.parse.urlencode(query, doseq=True)}"
        status, body = call(live.base, url)
        command = "show" if endpoint == "files" else endpoint
        assert status == 200, (url, body)
        assert body.decode() == cluster.run(command, *args, check=True).stdout, url
    assert json.loads(call(live.base, "/api/v1/report?failed")[1]) == []
    by_path = call(live.base, f"/api/v1/files?path={live.api_log}")[1]
    job_id = json.loads(by_path)["job_id"]
    # A job id names a file its job scans (small files share a job): as `show JOB_ID` does.
    by_job = call(live.base, f"/api/v1/files?job_id={job_id}")[1]
    assert by_job == cluster.run("show", "--json", job_id, check=True).stdout.encode()
    assert json.loads(by_job)["job_id"] == job_id

    # The options of `logjobs push`: into high, case ignored, counting only, in parts, no retries.
    status, body = call(
        live.base,
        "/api/v1/push",
        {
            "paths": [live.api_log],
            "priority": "high",
            "patterns": ["error", "TWICE"],
            "ignore_case": True,
            "counts_only": True,
            "split_size": 256,
            "retries": 0,
            "timeout": 60,
            "wait": True,
        },
    )
    assert status == 200, body
    (outcome,) = json.loads(body)["outcome"]
    expected = {p: grep_i(live.api_log, p) for p in ("error", "TWICE")}
    assert outcome["counts"] == expected == {"error": 10, "TWICE": 1}

    def second_scan():
        row = cluster.report()[live.api_log]
        return row if row["queue"] == "high" and row["status"] == "finished" else None

    row = cluster.wait_for(second_scan, what="the second scan in the database")
    assert (row["counts"], row["ignore_case"], row["patterns"]) == (
        expected,
        True,
        ["error", "TWICE"],
    )
    assert row["levels"] == {} and row["parts"] > 1  # counted only, in byte ranges
    # A node's queue, which no worker here reads: the push waits there, and the answer says so.
    status, body = call(
        live.base, "/api/v1/push", {"paths": [live.api_log], "node": "web1", "force": True}
    )
    doc = json.loads(body)
    assert status == 200 and doc["queue"] == "web1.default"
    assert "no worker reads queue web1.default" in doc["warnings"][0]
    assert Queue("web1.default", connection=redis.Redis.from_url(cluster.server.url)).count == 1


def test_the_api_pushes_only_what_the_command_would(cluster, dashboard, conn, tmp_path):
    live = dashboard
    outside = tmp_path / "outside.log"
    outside.write_text("ERROR\n")
    for paths, fragment in (
        ([str(outside)], "is outside the allowed roots"),
        ([live.api_log, str(tmp_path / "missing.log")], "no such file or directory"),
        ([live.root + "/*.nothing"], "no file matches"),
        (["-"], "reads paths from standard input"),
    ):
        status, body = call(live.base, "/api/v1/push", {"paths": paths})
        assert status == 400 and fragment in json.loads(body)["error"], body
    assert conn.hlen(FILES_KEY) == 0  # refused whole: nothing enqueued
    # Without the token, or with a wrong one: nothing either.
    for headers, said in (
        ({}, "authentication required"),
        ({"Authorization": "Bearer not-the-token-0123456789"}, "wrong credentials: the API token"),
    ):
        status, body = call(live.base, "/api/v1/push", {"paths": [live.api_log]}, headers=headers)
        assert status == 401 and json.loads(body)["error"].startswith(said), body
    assert conn.hlen(FILES_KEY) == 0


def test_cancel_through_the_api_takes_back_what_waits_and_says_who(cluster, dashboard, conn):
    live = dashboard
    status, body = call(live.base, "/api/v1/push", {"paths": [live.api_log], "node": "web7"})
    assert status == 200, body  # no worker reads web7's queues: it waits
    status, body = call(live.base, "/api/v1/cancel", {"targets": [live.api_log, "/nowhere/*"]})
    doc = json.loads(body)
    assert status == 200 and doc["queued"] == [live.api_log] and doc["unknown"] == ["/nowhere/*"]
    assert Queue("web7.default", connection=conn).count == 0
    row = cluster.wait_for(
        lambda: (
            (r := json.loads(call(live.base, f"/api/v1/files?path={live.api_log}")[1]))
            and r.get("status") == "canceled"
            and r
        ),
        what="the row canceled",
    )
    assert row["error"].startswith("canceled by api-token@127.0.0.1")
    for body, fragment in (
        ({"targets": []}, "targets must be a list"),
        ({"targets": ["relative.log"]}, "neither an absolute path nor a job id"),
        ({"targets": ["/a"], "force": True}, "unknown option 'force'"),
    ):
        status, reply = call(live.base, "/api/v1/cancel", body)
        assert status == 400 and fragment in json.loads(reply)["error"], reply
    status, reply = call(live.base, "/api/v1/cancel", {"targets": ["/a"]}, headers={})
    assert status == 401


def test_a_session_pushes_with_its_csrf_token(seeded, redis_server, tmp_path):
    log = tmp_path / "a.log"
    log.write_text("ERROR\n")
    app = app_for(seeded, redis_server.url, dashboard_user=USER, dashboard_password=PASSWORD)
    client = app.test_client()
    conn = redis.Redis.from_url(redis_server.url)
    reply = client.post("/api/v1/push", json={"paths": [str(log)]}, headers=basic())
    refusal(reply, 400, "CSRF")
    assert conn.hget(FILES_KEY, str(log)) is None
    token = csrf_field(client.get("/failures", headers=basic()).get_data(as_text=True))
    reply = client.post(
        "/api/v1/push",
        json={"paths": [str(log)], "priority": "low"},
        headers=dict(basic(), **{"X-CSRFToken": token}),
    )
    assert reply.status_code == 200, reply.json
    (enqueued,) = reply.json["enqueued"]
    assert conn.hget(FILES_KEY, str(log)).decode() == enqueued["job_id"]
    assert Queue("low", connection=conn).count == 1
    first, second = reply.json["warnings"]
    assert first.startswith(f"no worker reads queue low at {redis_server.url}:")
    assert second.startswith("no `logjobs mirror` is running")
    conn.close()


def test_waiting_pushes_are_bounded_in_time_and_in_number(
    seeded, redis_server, tmp_path, monkeypatch
):
    monkeypatch.setattr(api, "MAX_WAIT", 3)
    monkeypatch.setattr(api, "MAX_WAITING", 1)
    app = app_for(seeded, redis_server.url, api_token=TOKEN)
    conn = redis.Redis.from_url(redis_server.url)
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    first.write_text("ERROR\n")
    second.write_text("ERROR\n")
    answers = {}

    def waiting_push():  # no worker runs: it waits its MAX_WAIT
        reply = app.test_client().post(
            "/api/v1/push", json={"paths": [str(first)], "wait": True}, headers=BEARER
        )
        answers["first"] = reply

    thread = threading.Thread(target=waiting_push)
    started = time.monotonic()
    thread.start()
    deadline = time.monotonic() + 10
    while conn.hget(FILES_KEY, str(first)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    reply = app.test_client().post(
        "/api/v1/push", json={"paths": [str(second)], "wait": True}, headers=BEARER
    )
    refusal(reply, 429, "1 push(es) waiting already")
    assert conn.hget(FILES_KEY, str(second)) is None  # refused before anything was enqueued
    thread.join(30)
    assert 3 <= time.monotonic() - started < 15
    reply = answers["first"]
    assert reply.status_code == 202 and "outcome" not in reply.json
    assert reply.json["pending"].startswith("1 job(s) still running after 3 s")
    assert reply.json["enqueued"][0]["path"] == str(first)
    # Its place is free again.
    reply = app.test_client().post("/api/v1/push", json={"paths": [str(second)]}, headers=BEARER)
    assert reply.status_code == 200 and conn.hget(FILES_KEY, str(second)) is not None
    conn.close()
