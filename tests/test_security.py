"""Attacks, with real processes: whoever can write to Redis runs no code anywhere, reads no file
outside a worker's roots, and crashes nothing; the dashboard answers only to its own names."""

import base64
import os
import pickle
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue as RQQueue
from rq.serializers import JSONSerializer

from logjobs import access, rqsafe, scanner
from logjobs.embedded import free_port
from logjobs.exceptions import ScanError

from helpers import BIN


class Mkdir:
    """A pickle that, when loaded, makes a directory: proof that it ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def evil(marker):
    return pickle.dumps(Mkdir(marker))


def plant_job(conn, job_id, data, queue="default", enqueue=True, **fields):
    """A job hash written into Redis by hand, as an attacker would, and (with `enqueue`) queued."""
    conn.hset(
        f"rq:job:{job_id}",
        mapping={
            "data": data,
            "origin": queue,
            "status": "queued",
            "created_at": "2026-12-01T00:00:00.000000Z",
            "description": "planted",
            **fields,
        },
    )
    conn.sadd("rq:queues", f"rq:queue:{queue}")
    if enqueue:
        conn.rpush(f"rq:queue:{queue}", job_id)


def wait_ended(conn, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = conn.hget(f"rq:job:{job_id}", "status")
        if status in (b"finished", b"failed"):
            return status.decode()
        time.sleep(0.1)
    raise AssertionError(f"{job_id} did not end")


def latest_error(conn, job_id):
    job = rqsafe.Job.fetch(job_id, connection=conn)
    return job.latest_result().exc_string.strip().splitlines()[-1]


def assert_still_scans(cluster, tmp_path, name="after.log"):
    """The worker (and mirror) that met the attack still do their work."""
    (tmp_path / name).write_text("ERROR\nERROR\n")
    out = cluster.run("push", "--wait", str(tmp_path / name), timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert cluster.report()[str(tmp_path / name)]["counts"] == {"ERROR": 2}


# -- code execution through Redis -----------------------------------------------------------------


def test_a_foreign_function_is_refused_by_a_worker(cluster, conn, tmp_path):
    marker = tmp_path / "ran"
    cluster.worker()
    # As an attacker would enqueue it: with RQ's own Queue (pickle), and as JSON, which logjobs'
    # workers read.
    pickled = RQQueue("default", connection=conn).enqueue(os.mkdir, str(marker))
    as_json = RQQueue("default", connection=conn, serializer=JSONSerializer).enqueue(
        "os.mkdir", str(marker)
    )
    for job in (pickled, as_json):
        assert wait_ended(conn, job.id) == "failed"
    assert not marker.exists()
    assert "not a logjobs job" in latest_error(conn, pickled.id)
    assert "'posix.mkdir' is not one of logjobs' job functions" in latest_error(
        conn, as_json.id
    ) or "'os.mkdir' is not one of logjobs' job functions" in latest_error(conn, as_json.id)
    assert rqsafe.Job.fetch(as_json.id, connection=conn).retries_left in (None, 0)
    cluster.mirror()
    assert_still_scans(cluster, tmp_path)


@pytest.mark.parametrize("where", ["data", "meta", "callback", "webhook"])
def test_a_planted_job_hash_runs_nothing_on_a_worker(cluster, conn, tmp_path, where):
    marker = tmp_path / "ran"
    call = zlib.compress(
        b'["logjobs.jobs.scan", null, [[{"path": "/nonexistent"}], {"patterns": ["ERROR"]}], {}]'
    )
    fields = {"data": zlib.compress(evil(marker)) if where == "data" else call}
    if where == "meta":
        fields["meta"] = evil(marker)
    elif where == "callback":
        fields["success_callback_name"] = "os.getcwd"
    elif where == "webhook":
        fields["webhooks"] = '[{"url": "http://127.0.0.1:1/", "job_status": "failed"}]'
    cluster.worker()
    plant_job(conn, "lj-planted", **fields)
    assert wait_ended(conn, "lj-planted") == "failed"
    assert not marker.exists()
    if where in ("callback", "webhook"):
        assert "not a logjobs job: it names" in latest_error(conn, "lj-planted")
    cluster.mirror()
    assert_still_scans(cluster, tmp_path)


def test_a_pickle_in_the_started_registry_runs_nothing_in_the_mirror(cluster, conn, tmp_path):
    """The keeper recovers abandoned jobs by reading them: a planted one must neither run nor crash
    it."""
    marker = tmp_path / "ran"
    plant_job(
        conn,
        "lj-abandoned",
        zlib.compress(evil(marker)),
        enqueue=False,
        meta=evil(marker),
        status="started",
    )
    conn.zadd("rq:wip:default", {"lj-abandoned:x1": 1})
    conn.zadd(
        "rq:wip:default", {b"\xff\xfe:bad:member": 1, b"no-colon": 1}
    )  # garbage RQ's reader fails on
    mirror = cluster.mirror()
    cluster.wait_for(
        lambda: conn.hget("rq:job:lj-abandoned", "status") == b"failed",
        timeout=30,
        what="the planted job failed by RQ's clean-up",
    )
    assert not marker.exists()
    assert mirror.poll() is None, cluster.logs()
    assert conn.zcard("rq:wip:default") == 0
    cluster.worker()
    assert_still_scans(cluster, tmp_path)
    assert mirror.poll() is None
    log = (tmp_path / f"mirror{cluster.procs.index(mirror)}.log").read_text()
    assert log.count("is not a logjobs scan") == 1, log


def test_a_pickled_result_runs_nothing_in_the_dashboard(cluster, conn, tmp_path):
    marker = tmp_path / "ran"
    cluster.worker()
    (tmp_path / "a.log").write_text("ERROR\n")
    job_id = cluster.json("push", "--wait", "--json", str(tmp_path / "a.log"))["enqueued"][0][
        "job_id"
    ]
    # The job's result, and its metadata, replaced by pickles.
    conn.xadd(
        f"rq:results:{job_id}",
        {"type": 1, "return_value": base64.b64encode(evil(marker)), "worker_name": "x"},
    )
    conn.hset(f"rq:job:{job_id}", mapping={"meta": evil(marker), "result": evil(marker)})
    plant_job(
        conn,
        "lj-evil-finished",
        zlib.compress(evil(marker)),
        enqueue=False,
        status="finished",
        meta=evil(marker),
    )
    conn.zadd("rq:finished:default", {"lj-evil-finished": time.time() + 3600})
    conn.xadd(
        "rq:results:lj-evil-finished", {"type": 1, "return_value": base64.b64encode(evil(marker))}
    )
    port = free_port()
    dash = cluster.spawn(
        [os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)], "dashboard"
    )
    base = f"http://127.0.0.1:{port}"
    cluster.wait_for(lambda: _get(base + "/static/logjobs.js")[0] == 200, what="the dashboard")
    for path in (
        "/rq/0/data/jobs/default/finished/10/asc/1.json",
        f"/rq/0/data/job/{job_id}.json",
        "/rq/0/data/job/lj-evil-finished.json",
        "/rq/0/data/workers.json",
        "/rq/0/data/queues.json",
        f"/rq/0/view/job/{job_id}",
    ):
        status, _ = _get(base + path)
        assert status == 200, path
    assert not marker.exists()
    assert dash.poll() is None
    # `push --wait` and `status` read results and workers too.
    (tmp_path / "b.log").write_text("ERROR\n")
    assert cluster.run("push", "--wait", str(tmp_path / "b.log")).returncode == 0
    cluster.run("mirror", "--once", check=True)
    assert cluster.run("status").returncode == 0
    assert not marker.exists()


def _get(url, headers=None):
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=10
        ) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError):
        return None, b""


def test_a_worker_without_logjobs_classes_fails_logjobs_jobs_saying_why(cluster, tmp_path):
    """RQ's default worker takes logjobs' JSON jobs for pickles: it cannot load them, and fails
    them."""
    for name in rqsafe.WORKER_ENV:
        del cluster.env[name]
    cluster.worker()
    cluster.mirror()
    (tmp_path / "a.log").write_text("ERROR\n")
    out = cluster.run("push", "--wait", "--retries", "0", str(tmp_path / "a.log"), timeout=60)
    assert out.returncode == 1
    assert "RQ_WORKER_CLASS=logjobs.rqsafe.Worker" in out.stdout, out.stdout
    row = cluster.wait_for(
        lambda: (r := cluster.report()[str(tmp_path / "a.log")])["status"] == "failed" and r
    )
    assert "RQ_WORKER_CLASS=logjobs.rqsafe.Worker" in row["error"]


# -- hostile data where logjobs keeps its own -----------------------------------------------------


def test_garbage_in_logjobs_keys_is_skipped_by_the_mirror_and_push(cluster, conn, tmp_path):
    from logjobs import defaults

    (tmp_path / "a.log").write_text("ERROR\n")
    key = str(tmp_path / "a.log").encode()
    bad = [
        conn.xadd(defaults.EVENTS_KEY, fields)
        for fields in (
            {"events": b"\x80\x04garbage"},
            {"events": b'[{"job_id": 1, "path": "/x", "state": "finished"}]'},
            {"events": b'[{"job_id": "j", "path": "/x", "state": "started", "part": -1}]'},
            {
                "events": b'[{"job_id": "j", "path": "/x", "state": "queued", "parts": 1, "part": '
                b'3, "queue": "q"}]'
            },
            {"nothing": b"here"},
            {
                "events": b'[{"job_id": "j", "path": "/y", "state": "queued", "parts": 1, "queue": '
                b'"default"}]' + b" " * (20 << 20)
            },
        )
    ]
    conn.hset(defaults.SCANNED_KEY, key, b"\x80not json")
    conn.hset(defaults.SCANNED_KEY, b"/other", b'{"dev": "x"}')
    conn.hset(defaults.INODES_KEY, b"1:2", b"\xff")
    conn.hset(defaults.FILES_KEY, b"/z", b"\xff\xfe")
    conn.hset(defaults.ATTEMPTS_KEY, b"lj-x", b"many")
    conn.hset(defaults.ORPHANS_KEY, b"lj-y", b"yesterday")
    conn.sadd("rq:queues", b"rq:queue:\xff", b"junk")
    conn.sadd("rq:workers", b"rq:worker:\xff", b"junk")
    conn.hset("rq:worker:w-bad", mapping={"birth": "not a date", "pid": "x", "queues": "default"})
    conn.sadd("rq:workers", "rq:worker:w-bad")
    mirror = cluster.mirror()
    cluster.worker()
    out = cluster.run("push", "--wait", str(tmp_path / "a.log"), timeout=60)
    assert out.returncode == 0 and "internal error" not in out.stderr, out.stdout + out.stderr
    cluster.wait_for(lambda: cluster.report()[str(tmp_path / "a.log")]["status"] == "finished")
    assert cluster.run("status").returncode == 0
    time.sleep(2)  # a few more cycles of the keeper and the reconciler
    assert mirror.poll() is None, cluster.logs()
    # Every bad entry was acknowledged, and trimmed.
    assert conn.xpending(defaults.EVENTS_KEY, defaults.EVENTS_GROUP)["pending"] == 0
    assert not {entry_id for entry_id, _ in conn.xrange(defaults.EVENTS_KEY)} & set(bad)


# -- reading files --------------------------------------------------------------------------------


def _scan_job(conn, path, queue="default"):
    """A scan job for any path, enqueued as an attacker would (logjobs' own function, by hand)."""
    return rqsafe.Queue(queue, connection=conn).enqueue(
        "logjobs.jobs.scan", [{"path": str(path)}], {"patterns": [""]}
    )


def test_a_worker_reads_nothing_outside_its_roots(cluster, conn, tmp_path):
    allowed, secret = tmp_path / "logs", tmp_path / "secret"
    allowed.mkdir()
    secret.mkdir()
    (secret / "shadow").write_text("root:$6$salt$hash:19000:0:99999:7:::\n")
    (allowed / "ok.log").write_text("ERROR\n")
    cluster.env["LOGJOBS_ROOTS"] = str(allowed)  # the worker's own host setting
    cluster.worker()
    job = _scan_job(conn, secret / "shadow")
    assert wait_ended(conn, job.id) == "failed"
    assert "outside the allowed roots" in latest_error(conn, job.id)
    # Through a symlink inside the roots, too.
    os.symlink(secret / "shadow", allowed / "link.log")
    job = _scan_job(conn, allowed / "link.log")
    assert wait_ended(conn, job.id) == "failed"
    assert "outside the allowed roots" in latest_error(conn, job.id)
    cluster.mirror()
    assert_still_scans(cluster, allowed)


def test_a_file_swapped_for_a_symlink_between_push_and_scan_is_refused(cluster, tmp_path):
    allowed = tmp_path / "logs"
    allowed.mkdir()
    (tmp_path / "shadow").write_text("root:secret-hash:19000::::\n" * 3)
    log = allowed / "app.log"
    log.write_text("ERROR ordinary\n")
    cluster.env["LOGJOBS_ROOTS"] = str(allowed)
    cluster.mirror()
    assert cluster.run("push", "--pattern", "", str(log)).returncode == 0
    os.remove(log)
    os.symlink(tmp_path / "shadow", log)  # swapped before any worker opened it
    cluster.worker()
    row = cluster.wait_for(lambda: (r := cluster.report()[str(log)])["status"] == "failed" and r)
    assert "outside the allowed roots" in row["error"] and row["attempts"] == 1
    assert "secret-hash" not in cluster.run("top", "--json").stdout
    assert "secret-hash" not in cluster.run("show", "--json", str(log)).stdout


def test_a_symlinked_folder_swapped_in_after_the_check_is_caught_where_the_file_is_opened(tmp_path):
    """The roots are checked on the file the kernel opened, not only on the name (resolved
    before)."""
    allowed, outside = tmp_path / "logs", tmp_path / "outside"
    (allowed / "app").mkdir(parents=True)
    outside.mkdir()
    (allowed / "app" / "x.log").write_text("ERROR\n")
    (outside / "x.log").write_text("ERROR secret\n")
    roots = access.Roots.of([allowed])
    real = os.path.realpath
    swapped = []

    def swap_after_resolving(path, *args, **kwargs):
        resolved = real(path, *args, **kwargs)
        if not swapped:  # the race: between resolving the name and opening it
            os.rename(allowed / "app", tmp_path / "was-app")
            os.symlink(outside, allowed / "app")
            swapped.append(True)
        return resolved

    access.os.path.realpath = swap_after_resolving
    try:
        with pytest.raises(ScanError, match="outside the allowed roots"):
            scanner.scan(allowed / "app" / "x.log", ["ERROR"], roots=roots)
    finally:
        access.os.path.realpath = real
    assert swapped


@pytest.mark.parametrize(
    "path", ["/proc/self/environ", "/proc/kmsg", "/sys/kernel/notes", "/dev/zero"]
)
def test_kernel_files_are_refused_unless_a_root_names_them(path, tmp_path):
    with pytest.raises(ScanError, match="outside what may be read"):
        scanner.scan(path, ["ERROR"])
    assert scanner.scan("/proc/version", ["Linux"], roots=access.Roots.of(["/proc"])).counts == {
        "Linux": 1
    }


def test_push_refuses_kernel_files_and_nul_bytes(cluster):
    cluster.mirror()
    started = time.monotonic()
    out = cluster.run("push", "/proc/kmsg")
    assert (
        out.returncode == 2
        and "outside what may be read" in out.stderr
        and time.monotonic() - started < 20
    )
    out = cluster.run("push", "-", input="/tmp/a\0b\n")
    assert (
        out.returncode == 2 and "NUL byte" in out.stderr and "internal error" not in out.stderr
    ), out.stderr


def test_a_worker_without_roots_says_so_at_start(cluster):
    cluster.env.pop("LOGJOBS_ROOTS", None)
    worker = cluster.worker(name="no-roots")
    cluster.wait_for(
        lambda: "no allowed roots on this host" in (cluster.tmp / "no-roots.log").read_text(),
        what="the warning",
    )
    cluster.env["LOGJOBS_ROOTS"] = "/var/log"
    cluster.worker(name="with-roots")
    cluster.wait_for(
        lambda: "reads files below /var/log only" in (cluster.tmp / "with-roots.log").read_text(),
        what="the roots",
    )
    assert worker.poll() is None


def test_examples_off_stores_no_raw_line(cluster, tmp_path):
    (tmp_path / "a.log").write_text("2024-05-01 12:00:00 ERROR card 4111111111111111 declined\n")
    cluster.env["LOGJOBS_EXAMPLES"] = "off"
    cluster.worker()
    cluster.mirror()
    assert cluster.run("push", "--wait", str(tmp_path / "a.log")).returncode == 0
    top = cluster.json("top", "--json")
    assert [m["template"] for m in top] == ["card <NUM> declined"] and top[0]["example"] == ""
    assert "4111111111111111" not in cluster.run("show", "--json", str(tmp_path / "a.log")).stdout


# -- the dashboard --------------------------------------------------------------------------------


def test_the_dashboard_answers_only_to_its_own_names_without_credentials(cluster):
    port = free_port()
    dash = cluster.spawn(
        [os.path.join(BIN, "logjobs"), "dashboard", "--port", str(port)], "dashboard"
    )
    base = f"http://127.0.0.1:{port}"
    cluster.wait_for(lambda: _get(base + "/static/logjobs.js")[0] == 200, what="the dashboard")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert _get(base + "/files", {"Host": host})[0] in (200, 503), host
    status, body = _get(base + "/files", {"Host": "attacker.example"})
    assert status == 421 and b"dashboard_hosts" in body
    request = urllib.request.Request(
        base + "/rq/requeue/default", method="POST", headers={"Host": f"attacker.example:{port}"}
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 421
    assert dash.poll() is None


def test_wrong_passwords_meet_a_growing_wait(tmp_path):
    from logjobs.settings import Settings
    from logjobs.web import create_app

    clock = [0.0]
    app = create_app(
        Settings(
            db=str(tmp_path / "none.db"),
            redis_url="redis://127.0.0.1:1/0",
            dashboard_user="ops",
            dashboard_password="right",
        )
    )
    app.extensions["logjobs.backoff"].clock = lambda: clock[0]
    client = app.test_client()

    def login(password):
        token = base64.b64encode(f"ops:{password}".encode()).decode()
        return client.get("/metrics", headers={"Authorization": f"Basic {token}"}).status_code

    assert [login("wrong") for _ in range(5)] == [401] * 5
    assert login("wrong") == 401 and login("right") == 429  # the sixth wrong one starts the wait
    clock[0] += 1.1
    assert login("wrong") == 401 and login("wrong") == 429
    clock[0] += 2.1
    assert login("right") != 401 and login("wrong") == 401  # right: the count starts over


def test_query_string_passwords_are_masked_everywhere(cluster, tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0?password=hunter2-secret"
    out = cluster.run("--redis-url", url, "push", str(tmp_path))
    assert out.returncode == 2 and "hunter2" not in out.stderr and "password=***" in out.stderr, (
        out.stderr
    )
    db = "postgresql://u@127.0.0.1:1/x?password=hunter2-secret"
    out = cluster.run("--db", db, "report")
    assert out.returncode == 2 and "hunter2" not in out.stderr + out.stdout, out.stderr


# -- bad settings and input -----------------------------------------------------------------------


def test_settings_out_of_range_are_refused_at_load(cluster, tmp_path):
    out = cluster.run("push", "--timeout", "99999999999999999999999", str(tmp_path))
    assert out.returncode == 2 and "internal error" not in out.stderr
    cluster.env["LOGJOBS_JOB_TIMEOUT"] = "99999999999999999999999"
    out = cluster.run("push", str(tmp_path))
    assert out.returncode == 2 and "job_timeout must be at most" in out.stderr, out.stderr


@pytest.mark.parametrize("make", ["zero", "fifo", "directory"])
def test_a_config_file_that_is_no_file_is_refused_at_once(cluster, tmp_path, make):
    config = {"zero": "/dev/zero", "fifo": str(tmp_path / "fifo"), "directory": str(tmp_path)}[make]
    if make == "fifo":
        os.mkfifo(config)
    started = time.monotonic()
    out = cluster.run("--config", config, "status", timeout=20)
    assert out.returncode == 2 and "is not a regular file" in out.stderr, out.stderr
    assert time.monotonic() - started < 10


# -- fuzzing the decoders --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(lambda d: zlib.compress(d), st.binary(max_size=300)),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=5), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda v: zlib.compress(rqsafe.Serializer.dumps(v))),
    )
)
def test_the_job_payload_decoder_only_accepts_logjobs_calls(data):
    try:
        func, args, kwargs = rqsafe.decode_call(data)
    except rqsafe.Refused:
        return
    assert func in rqsafe.JOB_FUNCTIONS and isinstance(args, list) and isinstance(kwargs, dict)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                b"data",
                b"meta",
                b"created_at",
                b"status",
                b"origin",
                b"exc_info",
                b"retries_left",
                b"timeout",
                b"dependency_ids",
                b"result",
                b"webhooks",
                b"failure_callback_name",
                b"enqueued_at",
                b"retry_intervals",
            ]
        ),
        st.binary(max_size=60),
        max_size=10,
    )
)
def test_loading_any_job_hash_never_fails_and_never_runs_it(fields):
    job = rqsafe.Job(
        "lj-fuzz", connection=redis.Redis()
    )  # never used: restore only reads what it is given
    job.restore(fields)
    try:
        job.func_name  # noqa: B018 - its decoding is what is tested
    except rqsafe.Refused:
        assert job.retries_left == 0


def test_a_zip_bomb_is_refused_without_inflating_it():
    bomb = zlib.compress(b"[" * (rqsafe.MAX_CALL_BYTES + 10), 9)
    assert len(bomb) < 100_000
    with pytest.raises(rqsafe.Refused, match="over 16 MiB"):
        rqsafe.decode_call(bomb)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_characters="\0"), max_size=40))
def test_any_path_the_scanner_is_given_ends_in_a_result_or_a_scan_error(tmp_path_factory, name):
    roots = access.Roots.of([tmp_path_factory.getbasetemp()])
    for path in (name, "/" + name, os.path.join(str(tmp_path_factory.getbasetemp()), name)):
        try:
            scanner.scan(path, ["ERROR"], roots=roots, analyse=True)
        except ScanError:
            pass
        except ValueError as exc:  # a file name Python cannot pass to the kernel
            assert "surrogates" in str(exc) or "null" in str(exc)


def test_the_units_set_the_worker_classes():
    """The units' Environment= lines are the one place that lists what a worker needs; they agree
    with WORKER_ENV, as `logjobs worker`, selftest and bin/demo do."""
    import glob

    for unit in glob.glob(
        os.path.join(os.path.dirname(__file__), "..", "conf", "systemd", "*worker*.service")
    ) + glob.glob(os.path.join(os.path.dirname(__file__), "..", "conf", "supervisor", "*.conf")):
        text = open(unit).read()
        for name, value in rqsafe.WORKER_ENV.items():
            assert f"{name}={value}" in text or f'{name}="{value}"' in text, (unit, name)


def test_logjobs_worker_runs_rq_with_the_worker_classes(cluster, tmp_path):
    cluster.env = {k: v for k, v in cluster.env.items() if k not in rqsafe.WORKER_ENV}
    cluster.spawn([os.path.join(BIN, "logjobs"), "worker", "--name", "wrapped"], "wrapped")
    cluster.mirror()
    (tmp_path / "a.log").write_text("ERROR\n")
    assert cluster.run("push", "--wait", str(tmp_path / "a.log"), timeout=60).returncode == 0


def test_no_logjobs_process_imports_pickle_for_rq(tmp_path):
    """Every RQ class logjobs uses is rqsafe's: a quick check that no module reaches for RQ's
    own."""
    root = os.path.join(os.path.dirname(__file__), "..", "logjobs")
    offenders = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py") and name != "rqsafe.py":
                text = open(os.path.join(folder, name)).read()
                for needle in (
                    "from rq import Queue",
                    "from rq.job import Job",
                    "from rq import Worker",
                    "from rq.queue import",
                    "RQScheduler(",
                    "Job.fetch(",
                    "import pickle",
                ):
                    if needle in text and not (needle == "Job.fetch(" and "rqsafe" in text):
                        offenders.append((name, needle))
    assert offenders == []


def test_rq_internals_rqsafe_relies_on_are_there():
    """rqsafe and web.rqdashboard adapt RQ's and rq-dashboard's internals; setup.cfg bounds their
    versions."""
    from rq.job import Job
    from rq_dashboard import web as rq_web

    assert callable(Job._deserialize_data) and callable(Job.restore)
    for name in ("Job", "Queue", "Worker", "requeue_job", "config"):
        assert hasattr(rq_web, name)
    import rq.cron

    assert hasattr(rq.cron, "Queue")
    subprocess.run([sys.executable, "-c", "import logjobs.rqsafe"], check=True)
