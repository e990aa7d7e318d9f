#!/usr/bin/python3
"""`kiln submit`, `kiln status` and `kiln dlq` against a real redis-server and
the real Python Celery client and worker (Debian's python3-celery, -redis).

Each test starts a private redis-server on a unix socket in a temporary
folder and tears it down.  Messages kiln submits are read back with kombu and
run by a real `celery worker -P solo` whose stub tasks carry the same names;
their results come back through `kiln submit --wait`.  Status and dead-letter
tests seed the keys of docs/redis-keys.md by hand, with messages the real
Celery client wrote.

Usage: test_submit_status.py [SubmitStatusTest.test_NAME ...]
Environment: KILN_BIN (the kiln binary).
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import celery  # noqa: E402
import kombu  # noqa: E402
import redis  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KILN = os.environ.get("KILN_BIN", os.path.join(HERE, "..", "..", "build", "kiln"))
SEP = "\x06\x16"
RUN_TIMEOUT = 60

STUB_TASKS = '''
import os, time
from celery import Celery

url = os.environ["STUB_BROKER"]
app = Celery("stub", broker=url, backend=url)
app.conf.task_track_started = True
app.conf.worker_hijack_root_logger = False


@app.task(name="hello.echo", bind=True)
def echo(self, *args, **kwargs):
    self.update_state(state="PROGRESS", meta={"fraction": 0.5, "message": "halfway"})
    time.sleep(0.3)
    r = self.request
    return {"args": list(args), "kwargs": kwargs, "priority": r.delivery_info.get("priority"),
            "timelimit": list(r.timelimit or []), "expires": r.expires}


@app.task(name="hello.fail")
def fail(message="boom"):
    raise ValueError(message)


@app.task(name="hello.flaky", bind=True, max_retries=2)
def flaky(self):
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("not yet"), countdown=0.2)
    return "third time lucky" if self.request.retries > 1 else "second time lucky"
'''


class Run:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.stdout, self.stderr = argv, rc, out, err

    def __str__(self):
        return "$ %s\nexit %d\n--- stdout\n%s--- stderr\n%s---" % (
            " ".join(self.argv), self.rc, self.stdout, self.stderr)


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SubmitStatusTest(unittest.TestCase):
    maxDiff = None

    # --- fixtures -----------------------------------------------------------

    def setUp(self):
        if not os.access(KILN, os.X_OK):
            raise AssertionError("kiln binary not found: %s (set KILN_BIN)" % KILN)
        self.tmp = tempfile.mkdtemp(prefix="kiln-submit-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock = os.path.join(self.tmp, "redis.sock")
        self.url = "redis+socket://" + self.sock
        self.procs = []
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("KILN_") or k == "KILN_BIN"}
        self.env["XDG_RUNTIME_DIR"] = self.tmp  # the embedded default stays in here

    def tearDown(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()

    def start_redis(self, *extra):
        log = open(os.path.join(self.tmp, "redis.log"), "w")
        p = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", self.tmp, *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(self.sock):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.sock)
                    s.close()
                    break
                except OSError:
                    pass
            time.sleep(0.02)
        else:
            raise AssertionError("redis-server did not start:\n" +
                                 open(os.path.join(self.tmp, "redis.log")).read())
        return p

    def redis(self, db=0, **kw):
        r = redis.Redis(unix_socket_path=self.sock, db=db, **kw)
        self.addCleanup(r.close)
        return r

    def start_celery_worker(self, queues="celery"):
        """A real Celery worker (-P solo) running STUB_TASKS; waits until ready."""
        with open(os.path.join(self.tmp, "stubtasks.py"), "w") as f:
            f.write(STUB_TASKS)
        logpath = os.path.join(self.tmp, "celery.log")
        log = open(logpath, "w")
        env = dict(self.env, STUB_BROKER=self.url, PYTHONDONTWRITEBYTECODE="1")
        p = subprocess.Popen(
            ["/usr/bin/python3", "-m", "celery", "-A", "stubtasks", "worker", "-P", "solo",
             "-Q", queues, "--without-heartbeat", "--without-gossip", "--without-mingle",
             "-l", "info", "-n", "stub@%h"],
            cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(p)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(logpath) as f:
                if " ready." in f.read():
                    return p
            if p.poll() is not None:
                break
            time.sleep(0.1)
        with open(logpath) as f:
            raise AssertionError("celery worker did not start:\n" + f.read())

    def kiln(self, *args, env=None, timeout=RUN_TIMEOUT):
        argv = [KILN, *args]
        p = subprocess.run(argv, env=env or self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, stdin=subprocess.DEVNULL)
        r = Run(argv, p.returncode, p.stdout.decode(), p.stderr.decode())
        sys.stderr.write("%s\n" % r)
        return r

    def submit(self, *args, **kw):
        return self.kiln("submit", *args, "--broker", self.url, **kw)

    def assert_sent(self, r):
        self.assertEqual(r.rc, 0, "submit exits 0\n%s" % r)
        tid = r.stdout.strip()
        self.assertRegex(tid, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
                         "submit prints the task id (a uuid4)\n%s" % r)
        return tid

    def celery_messages(self, queue, n, **send):
        """n raw messages the real Celery client wrote (send_task to a scratch queue)."""
        app = celery.Celery("client", broker=self.url, backend=self.url)
        ids = []
        for i in range(n):
            res = app.send_task(send.get("name", "hello.echo"), args=[i], queue="scratch-" + queue)
            ids.append(res.id)
        r = self.redis()
        raws = [r.rpop("scratch-" + queue) for _ in range(n)]
        self.assertEqual(r.llen("scratch-" + queue), 0)
        app.close()
        return ids, raws

    # --- submit: the message, read back by the real client -------------------

    def test_message_decodes_with_kombu(self):
        self.start_redis()
        r = self.submit("hello.echo", "--args", '[1, "two"]', "--kwargs", '{"k": [3]}',
                        "--time-limit", "30", "--soft-time-limit", "20", "--expires", "300")
        tid = self.assert_sent(r)
        self.assertEqual(self.redis().llen("celery"), 1, "LPUSHed to the queue list")
        with kombu.Connection(self.url) as conn:
            q = conn.SimpleQueue("celery")
            m = q.get(timeout=5)
            self.assertEqual(m.headers["task"], "hello.echo")
            self.assertEqual(m.headers["id"], tid)
            self.assertEqual(m.headers["root_id"], tid)
            self.assertEqual(m.headers["retries"], 0)
            self.assertEqual(m.headers["timelimit"], [30, 20], "Celery's order: [hard, soft]")
            self.assertIsNotNone(m.headers["expires"])
            self.assertIsNone(m.headers["eta"])
            self.assertEqual(m.content_type, "application/json")
            args, kwargs, embed = m.decode()
            self.assertEqual(args, [1, "two"])
            self.assertEqual(kwargs, {"k": [3]})
            self.assertIn("callbacks", embed)
            self.assertEqual(m.properties["correlation_id"], tid)
            self.assertEqual(m.delivery_info["routing_key"], "celery")
            m.ack()
            q.close()

    def test_celery_worker_runs_it_and_wait_shows_progress(self):
        self.start_redis()
        self.start_celery_worker()
        r = self.submit("hello.echo", "--args", "[1, 2]", "--kwargs", '{"x": "y"}', "--wait",
                        "--timeout", "60")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(r.stdout.splitlines()), 1, "one line: the result\n%s" % r)
        res = json.loads(r.stdout)
        self.assertEqual(res["args"], [1, 2])
        self.assertEqual(res["kwargs"], {"x": "y"})
        self.assertEqual(res["timelimit"], [None, None])
        self.assertRegex(r.stderr, r"hello\.echo\[[0-9a-f-]{36}\] sent to queue \"celery\"")
        self.assertRegex(r.stderr, r"hello\.echo\[[0-9a-f-]{36}\] STARTED on stub@")
        self.assertRegex(r.stderr, r"hello\.echo\[[0-9a-f-]{36}\] PROGRESS 50%: halfway")

        # --json: the result meta as Celery's backend stores it; the Celery
        # worker sees the time limits and the expiry kiln put in the headers
        r = self.submit("hello.echo", "--wait", "--timeout", "60", "--json", "--time-limit", "30",
                        "--soft-time-limit", "20", "--expires", "600")
        self.assertEqual(r.rc, 0, r)
        meta = json.loads(r.stdout)
        self.assertEqual(meta["status"], "SUCCESS")
        self.assertEqual(meta["result"]["args"], [])
        self.assertEqual(meta["result"]["timelimit"], [30, 20])
        self.assertIsNotNone(meta["result"]["expires"])
        self.assertRegex(meta["task_id"], r"^[0-9a-f-]{36}$")

    def test_celery_worker_failure_and_retry(self):
        self.start_redis()
        self.start_celery_worker()
        r = self.submit("hello.fail", "--args", '["bad input"]', "--wait", "--timeout", "60")
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.stdout, "", r)
        self.assertRegex(r.stderr, r"(?m)^kiln: hello\.fail failed: ValueError: bad input$")

        r = self.submit("hello.flaky", "--wait", "--timeout", "60")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.stdout), "second time lucky")
        self.assertRegex(r.stderr, r"hello\.flaky\[[0-9a-f-]{36}\] RETRY after KeyError: ")

    def test_wait_timeout(self):
        self.start_redis()
        start = time.monotonic()
        r = self.submit("hello.echo", "--wait", "--timeout", "1.5")
        self.assertEqual(r.rc, 1, r)
        self.assertLess(time.monotonic() - start, 15)
        self.assertEqual(r.stdout, "", r)
        self.assertRegex(r.stderr, r"timed out after 1\.5 s waiting for hello\.echo\[[0-9a-f-]{36}\] "
                                   r"\(last state: PENDING\)")
        self.assertIn('no live kiln worker consumes queue "celery"', r.stderr)
        self.assertEqual(self.redis().llen("celery"), 1, "the task stays queued")
        r = self.submit("hello.echo", "--timeout", "3")
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--timeout needs --wait", r.stderr)

    def test_priority_sublists(self):
        self.start_redis()
        db = self.redis()
        expect = {None: "celery", 0: "celery", 2: "celery", 3: "celery" + SEP + "3",
                  5: "celery" + SEP + "3", 6: "celery" + SEP + "6", 9: "celery" + SEP + "9"}
        for prio, key in expect.items():
            before = db.llen(key)
            args = ["hello.echo"] + (["--priority", str(prio)] if prio is not None else [])
            self.assert_sent(self.submit(*args))
            self.assertEqual(db.llen(key), before + 1, "priority %s goes to %r" % (prio, key))
        self.assertEqual(sum(db.llen(k) for k in set(expect.values())), len(expect))
        r = self.submit("hello.echo", "--priority", "10")
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--priority", r.stderr)
        self.assertIn("0 to 9", r.stderr)
        # a Celery worker on the queue runs a priority message (kombu reads the sub-lists)
        db.delete(*set(expect.values()))
        self.start_celery_worker()
        r = self.submit("hello.echo", "--priority", "9", "--queue", "celery", "--wait", "--timeout",
                        "60")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.stdout)["priority"], 9)

    def test_submit_json_and_queue(self):
        self.start_redis()
        r = self.submit("hello.echo", "--queue", "urgent", "--priority", "6", "--json")
        self.assertEqual(r.rc, 0, r)
        o = json.loads(r.stdout)
        self.assertEqual(o["task"], "hello.echo")
        self.assertEqual(o["queue"], "urgent")
        self.assertEqual(o["key"], "urgent" + SEP + "6")
        self.assertEqual(o["priority"], 6)
        self.assertFalse(o["delayed"])
        raw = self.redis().lindex("urgent" + SEP + "6", 0)
        env = json.loads(raw)
        self.assertEqual(env["headers"]["id"], o["id"])
        self.assertEqual(env["properties"]["priority"], 6)
        self.assertEqual(env["properties"]["delivery_info"]["routing_key"], "urgent")
        body = json.loads(base64.b64decode(env["body"]))
        self.assertEqual(body[:2], [[], {}])

    def test_countdown_and_eta_go_to_the_eta_set(self):
        self.start_redis()
        db = self.redis()
        before = time.time()
        tid = self.assert_sent(self.submit("hello.echo", "--countdown", "60", "--priority", "3"))
        self.assertEqual(db.llen("celery"), 0)
        self.assertEqual(db.llen("celery" + SEP + "3"), 0)
        entries = db.zrange("kiln:eta", 0, -1, withscores=True)
        self.assertEqual(len(entries), 1)
        member, score = entries[0]
        qkey, _, raw = member.partition(b"\n")
        self.assertEqual(qkey, ("celery" + SEP + "3").encode(), "member is <queue key>\\n<message>")
        env = json.loads(raw)
        self.assertEqual(env["headers"]["id"], tid)
        self.assertIsNotNone(env["headers"]["eta"])
        self.assertGreaterEqual(score, (before + 59) * 1000)
        self.assertLessEqual(score, (time.time() + 61) * 1000)

        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        self.assert_sent(self.submit("hello.echo", "--eta", when))
        self.assertEqual(db.zcard("kiln:eta"), 2)
        # an eta in the past goes straight to the queue (Celery runs it at once)
        self.assert_sent(self.submit("hello.echo", "--eta", "2001-01-01T00:00:00Z"))
        self.assertEqual(db.llen("celery"), 1)
        self.assertEqual(db.zcard("kiln:eta"), 2)
        # nonsense is refused before anything is sent
        for args, want in [(["--countdown", "-5"], "--countdown"),
                           (["--eta", "tomorrow"], "--eta"),
                           (["--countdown", "5", "--eta", when], "not both"),
                           (["--countdown", "60", "--expires", "30"], "expire before it is due"),
                           (["--time-limit", "5", "--soft-time-limit", "10"], "must be below")]:
            r = self.submit("hello.echo", *args)
            self.assertEqual(r.rc, 2, r)
            self.assertIn(want, r.stderr, r)
        self.assertEqual(db.llen("celery"), 1)
        self.assertEqual(db.zcard("kiln:eta"), 2)

    def test_evicting_redis_warned(self):
        self.start_redis("--maxmemory-policy", "allkeys-lru")
        r = self.submit("hello.echo")
        self.assert_sent(r)
        self.assertIn("maxmemory-policy allkeys-lru", r.stderr)
        self.redis().config_set("maxmemory-policy", "noeviction")
        r = self.submit("hello.echo")
        self.assert_sent(r)
        self.assertNotIn("maxmemory-policy", r.stderr)

    def test_database_number(self):
        self.start_redis()
        r = self.kiln("submit", "hello.echo", "--broker", self.url + "?virtual_host=3")
        self.assert_sent(r)
        self.assertEqual(self.redis(db=3).llen("celery"), 1)
        self.assertEqual(self.redis(db=0).llen("celery"), 0)
        r = self.kiln("submit", "hello.echo", "--broker", "unix://" + self.sock + "?db=4")
        self.assert_sent(r)
        self.assertEqual(self.redis(db=4).llen("celery"), 1)

    # --- finding the broker; failing loudly ----------------------------------

    def test_broker_unreachable(self):
        missing = os.path.join(self.tmp, "nothing.sock")
        port = free_tcp_port()
        for cmd in (["submit", "hello.echo"], ["submit", "hello.echo", "--wait"], ["status"],
                    ["status", "--json"], ["dlq", "list"], ["dlq", "requeue", "--all"],
                    ["dlq", "purge", "--yes"]):
            r = self.kiln(*cmd, "--broker", "redis+socket://" + missing)
            self.assertEqual(r.rc, 4, "unreachable broker exits 4\n%s" % r)
            self.assertEqual(r.stdout, "", r)
            self.assertIn(missing, r.stderr, "names the address\n%s" % r)
            self.assertIn("No such file or directory", r.stderr, "names the cause\n%s" % r)
        r = self.kiln("submit", "hello.echo", "--broker", "redis://127.0.0.1:%d/0" % port)
        self.assertEqual(r.rc, 4, r)
        self.assertIn("redis://127.0.0.1:%d/0" % port, r.stderr)
        self.assertIn("Connection refused", r.stderr)
        # no broker named at all: the embedded broker's socket in the runtime
        # directory (set by the config here, so a real /run/kiln is not touched)
        conf = os.path.join(self.tmp, "kiln.json")
        with open(conf, "w") as f:
            json.dump({"runtime_dir": os.path.join(self.tmp, "rt")}, f)
        r = self.kiln("submit", "hello.echo", "--config", conf)
        self.assertEqual(r.rc, 4, r)
        self.assertIn(os.path.join(self.tmp, "rt", "redis.sock"), r.stderr)
        self.assertIn("embedded broker", r.stderr)

    def test_broker_from_env_and_config(self):
        self.start_redis()
        env = dict(self.env, KILN_BROKER_URL=self.url + "?virtual_host=1")
        self.assert_sent(self.kiln("submit", "hello.echo", env=env))
        self.assertEqual(self.redis(db=1).llen("celery"), 1)
        conf = os.path.join(self.tmp, "kiln.json")
        with open(conf, "w") as f:
            json.dump({"broker": self.url + "?virtual_host=2", "queues": ["celery"]}, f)
        self.assert_sent(self.kiln("submit", "hello.echo", "--config", conf))
        self.assertEqual(self.redis(db=2).llen("celery"), 1)
        # precedence: --broker over $KILN_BROKER_URL over the config
        self.assert_sent(self.kiln("submit", "hello.echo", "--config", conf, env=env))
        self.assertEqual(self.redis(db=1).llen("celery"), 2)
        self.assert_sent(self.kiln("submit", "hello.echo", "--config", conf, "--broker", self.url,
                                   env=env))
        self.assertEqual(self.redis(db=0).llen("celery"), 1)
        with open(conf, "w") as f:
            f.write('{"broker": "rediss://h:6380/0"}')
        r = self.kiln("status", "--config", conf)
        self.assertEqual(r.rc, 2, r)
        self.assertIn(conf + ": broker: broker URL: rediss://", r.stderr)

    def test_password_in_argv_refused(self):
        self.start_redis("--requirepass", "s3cret")
        for cmd in (["submit", "hello.echo"], ["status"], ["dlq", "list"]):
            r = self.kiln(*cmd, "--broker", "redis+socket://:s3cret@" + self.sock)
            self.assertEqual(r.rc, 2, r)
            self.assertIn("holds a password", r.stderr)
            self.assertIn("KILN_BROKER_URL", r.stderr)
            self.assertIn("KILN_REDIS_PASSWORD", r.stderr)
            self.assertNotIn("s3cret", r.stderr + r.stdout)
        self.assertEqual(self.redis(password="s3cret").llen("celery"), 0, "nothing was sent")

    def test_requirepass(self):
        self.start_redis("--requirepass", "s3cret")
        r = self.submit("hello.echo")
        self.assertEqual(r.rc, 4, r)
        self.assertIn(self.sock, r.stderr)
        self.assertIn("NOAUTH", r.stderr)
        self.assertIn("KILN_REDIS_PASSWORD", r.stderr)
        r = self.submit("hello.echo", env=dict(self.env, KILN_REDIS_PASSWORD="wrong"))
        self.assertEqual(r.rc, 4, r)
        self.assertIn("refused the password", r.stderr)
        self.assertNotIn("wrong", r.stderr.replace("WRONGPASS", ""))
        self.assert_sent(self.submit("hello.echo", env=dict(self.env, KILN_REDIS_PASSWORD="s3cret")))
        self.assert_sent(self.kiln("submit", "hello.echo", env=dict(
            self.env, KILN_BROKER_URL="redis+socket://:s3cret@" + self.sock)))
        pw = os.path.join(self.tmp, "pw")
        with open(pw, "w") as f:
            f.write("s3cret\n")
        os.chmod(pw, 0o600)
        self.assert_sent(self.submit("hello.echo", env=dict(self.env,
                                                            KILN_REDIS_PASSWORD_FILE=pw)))
        conf = os.path.join(self.tmp, "kiln.json")
        with open(conf, "w") as f:
            json.dump({"password_file": pw}, f)
        self.assert_sent(self.submit("hello.echo", "--config", conf))
        r = self.kiln("status", "--json", "--broker", self.url,
                      env=dict(self.env, KILN_REDIS_PASSWORD="s3cret"))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(json.loads(r.stdout)["queues"][0]["ready"], 4)
        self.assertNotIn("s3cret", r.stdout)

    def test_acl_user(self):
        self.start_redis()
        admin = self.redis()
        admin.execute_command("ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")
        admin.close()
        url = "redis+socket://alice@" + self.sock
        ok = dict(self.env, KILN_REDIS_PASSWORD="alicepw")
        tid = self.assert_sent(self.kiln("submit", "hello.echo", "--broker", url, env=ok))
        r = self.kiln("submit", "hello.echo", "--broker", url,
                      env=dict(self.env, KILN_REDIS_PASSWORD="nope"))
        self.assertEqual(r.rc, 4, r)
        self.assertIn('refused the password of user "alice"', r.stderr)
        r = self.kiln("submit", "hello.echo", "--broker", self.url)
        self.assertEqual(r.rc, 4, r)
        db = self.redis(username="alice", password="alicepw")
        self.assertEqual(db.llen("celery"), 1)
        self.assertEqual(json.loads(db.lindex("celery", 0))["headers"]["id"], tid)
        r = self.kiln("status", "--json", "--broker", url, env=ok)
        self.assertEqual(r.rc, 0, r)

    # --- status ----------------------------------------------------------------

    def seed_workers(self, db):
        now = int(time.time() * 1000)
        ids, raws = self.celery_messages("inflight", 26)
        # w1: alive, 25 in flight (from celery and urgent/priority 3)
        db.zadd("kiln:workers", {"host1:100:aaaa": now, "host2:200:bbbb": now - 60000})
        db.set("kiln:hb:host1:100:aaaa", "1", px=30000)
        db.hset("kiln:worker:host1:100:aaaa", mapping={
            "host": "host1", "pid": "100", "queues": "celery,urgent,slow", "pools": "2",
            "heartbeat": str(now)})
        for i in range(25):
            tag = "host1:100:aaaa:%d" % (i + 1)
            db.hset("kiln:inflight:host1:100:aaaa", tag, raws[i])
            db.hset("kiln:inflightq:host1:100:aaaa", tag,
                    "celery" if i % 2 else "urgent" + SEP + "3")
        # w2: heartbeat expired, one in flight
        db.hset("kiln:worker:host2:200:bbbb", mapping={"host": "host2", "pid": "200",
                                                       "queues": "video"})
        db.hset("kiln:inflight:host2:200:bbbb", "host2:200:bbbb:7", raws[25])
        db.hset("kiln:inflightq:host2:200:bbbb", "host2:200:bbbb:7", "video")
        return ids

    def test_status_json(self):
        self.start_redis()
        db = self.redis()
        db.lpush("celery", "m1", "m2")
        db.lpush("celery" + SEP + "3", "m3")
        db.lpush("celery" + SEP + "9", "m4")
        db.lpush("urgent", *["u%d" % i for i in range(4)])
        db.lpush("video" + SEP + "6", "v1")
        now = time.time() * 1000
        db.zadd("kiln:eta", {"celery\nx1": now - 1000, "celery\nx2": now + 60000,
                             "urgent\nx3": now + 120000})
        db.lpush("kiln:dlq", "{}", "{}")
        ids = self.seed_workers(db)

        r = self.kiln("status", "--json", "--broker", self.url)
        self.assertEqual(r.rc, 0, r)
        st = json.loads(r.stdout)
        queues = {q["name"]: q for q in st["queues"]}
        self.assertEqual([q["name"] for q in st["queues"]], ["celery", "video", "urgent", "slow"],
                         "celery first, then every registered worker's queues (oldest heartbeat "
                         "first)")
        self.assertEqual(queues["celery"]["ready"], 4)
        self.assertEqual(queues["celery"]["by_priority"], {"0": 2, "3": 1, "6": 0, "9": 1})
        self.assertEqual(queues["urgent"]["ready"], 4)
        self.assertEqual(queues["slow"]["ready"], 0)
        self.assertEqual(queues["video"]["by_priority"], {"0": 0, "3": 0, "6": 1, "9": 0})
        self.assertEqual(st["eta"], {"waiting": 3, "due": 1})
        self.assertEqual(st["dlq"], 2)
        self.assertEqual(st["live_workers"], 1)
        self.assertEqual(st["dead_workers"], 1)
        w = {x["id"]: x for x in st["workers"]}
        live, dead = w["host1:100:aaaa"], w["host2:200:bbbb"]
        self.assertTrue(live["alive"])
        self.assertEqual(live["host"], "host1")
        self.assertEqual(live["pid"], 100)
        self.assertEqual(live["queues"], ["celery", "urgent", "slow"])
        self.assertEqual(live["inflight"], 25)
        self.assertEqual(len(live["tasks"]), 20, "at most 20 in-flight tasks listed")
        self.assertEqual([t["id"] for t in live["tasks"]], ids[:20], "oldest delivery tag first")
        self.assertTrue(all(t["task"] == "hello.echo" for t in live["tasks"]))
        self.assertEqual(live["tasks"][0]["queue"], "urgent")
        self.assertEqual(live["tasks"][0]["priority"], 3)
        self.assertEqual(live["tasks"][1]["queue"], "celery")
        self.assertFalse(dead["alive"])
        self.assertEqual(dead["inflight"], 1)
        self.assertEqual(dead["tasks"][0]["id"], ids[25])

        # --queues: only those
        r = self.kiln("status", "--json", "--queues", "urgent,none", "--broker", self.url)
        self.assertEqual(r.rc, 0, r)
        st = json.loads(r.stdout)
        self.assertEqual([(q["name"], q["ready"]) for q in st["queues"]], [("urgent", 4),
                                                                           ("none", 0)])
        r = self.kiln("status", "--queues", "a,,b", "--broker", self.url)
        self.assertEqual(r.rc, 2, r)

        # the text form says the same
        r = self.kiln("status", "--broker", self.url)
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.stdout, r"(?m)^celery\s+4\s+2 / 1 / 0 / 1$")
        self.assertIn("workers: 1 live, 1 dead", r.stdout)
        self.assertRegex(r.stdout, r"host1:100:aaaa\s+live.*25 in flight")
        self.assertRegex(r.stdout, r"host2:200:bbbb\s+DEAD")
        self.assertIn("... and 5 more", r.stdout)
        self.assertIn(ids[0], r.stdout)
        self.assertIn("dead letters (kiln:dlq): 2", r.stdout)
        self.assertIn("(kiln:eta): 3 (1 due)", r.stdout)

    def test_status_empty(self):
        self.start_redis()
        r = self.kiln("status", "--json", "--broker", self.url)
        self.assertEqual(r.rc, 0, r)
        st = json.loads(r.stdout)
        self.assertEqual(st["queues"], [{"name": "celery", "ready": 0,
                                         "by_priority": {"0": 0, "3": 0, "6": 0, "9": 0}}])
        self.assertEqual(st["workers"], [])
        self.assertEqual((st["live_workers"], st["dead_workers"], st["dlq"]), (0, 0, 0))
        self.assertEqual(st["eta"], {"waiting": 0, "due": 0})
        self.assertEqual(st["broker"], self.url)

    # --- dead letters ------------------------------------------------------------

    def seed_dlq(self, db):
        ids, raws = self.celery_messages("dlq", 3)
        pickled = json.loads(raws[2])
        pickled["content-type"] = "application/x-python-serialize"
        entries = [
            {"reason": "killed its child 3 times (poison)", "queue": "celery", "task": "hello.echo",
             "id": ids[0], "time": time.time() - 60,
             "deaths": [{"cause": "SIGKILL"}, {"cause": "SIGKILL"}, {"cause": "SIGSEGV"}],
             "message": raws[0].decode()},
            {"reason": "no plugin serves task hello.echo", "queue": "urgent" + SEP + "6",
             "task": "hello.echo", "id": ids[1], "time": time.time() - 30, "deaths": [],
             "message": raws[1].decode()},
            {"reason": "content type application/x-python-serialize is not JSON",
             "queue": "celery", "task": "hello.echo", "id": ids[2], "time": time.time(),
             "deaths": [], "message": json.dumps(pickled)},
        ]
        for e in entries:
            db.lpush("kiln:dlq", json.dumps(e))  # newest at the left
        db.rpush("kiln:deaths:" + ids[0], "{}", "{}", "{}")
        return ids

    def test_dlq_list(self):
        self.start_redis()
        db = self.redis()
        ids = self.seed_dlq(db)
        r = self.kiln("dlq", "list", "--json", "--broker", self.url)
        self.assertEqual(r.rc, 0, r)
        got = json.loads(r.stdout)
        self.assertEqual([e["id"] for e in got], [ids[2], ids[1], ids[0]], "newest first")
        self.assertEqual(len(got[2]["deaths"]), 3)
        r = self.kiln("dlq", "list", "--broker", self.url)
        self.assertEqual(r.rc, 0, r)
        lines = r.stdout.splitlines()
        self.assertIn("reason", lines[0])
        self.assertRegex(lines[3], r"%s\s+hello\.echo\s+celery\s+3\s+killed its child 3 times"
                         % re.escape(ids[0]))
        self.assertRegex(lines[2], r"%s\s+hello\.echo\s+urgent/6\s+0\s+no plugin serves"
                         % re.escape(ids[1]))
        r = self.kiln("dlq", "list", "--limit", "1", "--broker", self.url)
        self.assertIn(ids[2], r.stdout)
        self.assertNotIn(ids[1], r.stdout)
        self.assertIn("the newest 1 of 3", r.stdout)
        for bad in (["dlq"], ["dlq", "show"], ["dlq", "list", "--limit", "0"],
                    ["dlq", "list", "x"], ["dlq", "requeue"], ["dlq", "requeue", "x", "--all"]):
            r = self.kiln(*bad, "--broker", self.url)
            self.assertEqual(r.rc, 2, r)

    def test_dlq_requeue(self):
        self.start_redis()
        db = self.redis()
        ids = self.seed_dlq(db)
        r = self.kiln("dlq", "requeue", ids[0], "--broker", self.url)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("requeued %s (hello.echo) to queue celery" % ids[0], r.stdout)
        self.assertIn("headers.retries kept at 0", r.stdout)
        self.assertEqual(db.llen("kiln:dlq"), 2)
        self.assertEqual(db.exists("kiln:deaths:" + ids[0]), 0, "death count cleared")
        self.assertEqual(json.loads(db.lindex("celery", 0))["headers"]["id"], ids[0])
        # again: gone
        r = self.kiln("dlq", "requeue", ids[0], "--broker", self.url)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("no dead letter with id %s" % ids[0], r.stderr)
        # --all: the decodable one goes back to its priority list, the pickle stays
        r = self.kiln("dlq", "requeue", "--all", "--broker", self.url)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("requeued %s (hello.echo) to queue urgent/6" % ids[1], r.stdout)
        self.assertIn("requeued 1 of 2", r.stdout)
        self.assertIn(ids[2], r.stderr)
        self.assertIn("left in place", r.stderr)
        self.assertEqual(db.llen("urgent" + SEP + "6"), 1)
        left = [json.loads(e) for e in db.lrange("kiln:dlq", 0, -1)]
        self.assertEqual([e["id"] for e in left], [ids[2]])
        # the requeued message is what Celery wrote, and kombu reads it
        with kombu.Connection(self.url) as conn:
            q = conn.SimpleQueue("celery")
            m = q.get(timeout=5)
            self.assertEqual(m.headers["id"], ids[0])
            self.assertEqual(m.decode()[0], [0])
            m.ack()
            q.close()

    def test_dlq_purge(self):
        self.start_redis()
        db = self.redis()
        self.seed_dlq(db)
        r = self.kiln("dlq", "purge", "--broker", self.url)
        self.assertEqual(r.rc, 2, r)
        self.assertIn("--yes", r.stderr)
        self.assertIn("3 dead letter", r.stderr)
        self.assertEqual(db.llen("kiln:dlq"), 3, "nothing deleted without --yes")
        r = self.kiln("dlq", "purge", "--yes", "--broker", self.url)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("purged 3 dead letter", r.stdout)
        self.assertEqual(db.exists("kiln:dlq"), 0)
        r = self.kiln("dlq", "list", "--broker", self.url)
        self.assertIn("empty", r.stdout)

    # --- usage ---------------------------------------------------------------------

    def test_usage(self):
        for cmd in (["submit", "--help"], ["status", "--help"], ["dlq", "--help"]):
            r = self.kiln(*cmd)
            self.assertEqual(r.rc, 0, r)
            self.assertTrue(r.stdout.startswith("usage: kiln " + cmd[0]), r)
        for args, want in [(["submit"], "which task"),
                           (["submit", "a", "b"], "one task at a time"),
                           (["submit", "t", "--args", "{}"], "--args must be a JSON array"),
                           (["submit", "t", "--kwargs", "[1"], "--kwargs: invalid JSON"),
                           (["submit", "t", "--queue", "a,b"], "one queue"),
                           (["submit", "t", "--bogus"], "bad option"),
                           (["submit", "bad name"], "space"),
                           (["status", "extra"], "unexpected argument"),
                           (["submit", "t", "--broker", "amqp://h"], "unsupported scheme")]:
            r = self.kiln(*args)
            self.assertEqual(r.rc, 2, r)
            self.assertIn(want, r.stderr, r)
            self.assertEqual(r.stdout, "", r)


if __name__ == "__main__":
    unittest.main(verbosity=2)
