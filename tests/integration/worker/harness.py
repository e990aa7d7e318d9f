"""Shared machinery for the `kiln worker` integration tests.

Every test gets a WorkerTestCase: a private temp directory (mode 0755: the
sandboxed children run as unprivileged uids and must read the plugins), its
own redis-server on a unix socket in it, kiln workers started in their own
sessions with their output in log files, and a teardown that kills every
process the test started, including anything kiln left behind: the test
process is a child subreaper (tests/hostile/kilntest.py), so orphans are
re-parented to it, where /proc shows them as its descendants.

Uses Debian's python3-celery and python3-redis only.

Environment: KILN_BIN (the kiln binary), KILN_PLUGINS (build/plugins: hello.so,
testtasks.so, hostile_*.so).
"""

import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "hostile"))
import kilntest  # noqa: E402  (subreaper, /proc walking)

import celery.result  # noqa: E402
import redis  # noqa: E402
from celery import Celery  # noqa: E402

# AsyncResult.__del__ unsubscribes from the result channel, reconnecting (with
# retries) if it must; after a test its redis-server is gone, and a result
# collected during the next test would stall that test.  Results here are
# never left pending in a way that matters.
celery.result.AsyncResult.__del__ = lambda self: None

KILN = os.environ.get("KILN_BIN", os.path.join(SOURCE_ROOT, "build", "kiln"))
PLUGINS = os.environ.get("KILN_PLUGINS", os.path.join(SOURCE_ROOT, "build", "plugins"))
SHOW = 12000  # characters of a log shown in a failure message


def log(fmt, *a):
    sys.stderr.write(("[%s] " % time.strftime("%H:%M:%S")) + (fmt % a if a else fmt) + "\n")
    sys.stderr.flush()


def wait_until(pred, timeout, what, interval=0.02):
    """Poll pred() until it returns something true; return that, or raise
    AssertionError naming `what` (a string or a callable giving one)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what() if callable(what) else what))
        time.sleep(interval)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _reap_orphans(keep):
    """waitpid() the zombie children of this process that no Popen owns (so
    a Popen still sees its own child's exit status)."""
    me = os.getpid()
    for pid, (ppid, state, _) in kilntest.proc_table().items():
        if ppid == me and state == "Z" and pid not in keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


class Proc:
    """A process started in its own session, output in a log file."""

    def __init__(self, tc, name, argv, env=None, cwd=None):
        self.tc, self.name, self.argv = tc, name, argv
        self.logpath = os.path.join(tc.tmp, "%s.log" % name)
        self._log = open(self.logpath, "ab")
        full = dict(os.environ)
        full.pop("KILN_BROKER_URL", None)
        full.pop("KILN_REDIS_PASSWORD", None)
        full.pop("KILN_REDIS_PASSWORD_FILE", None)
        full.update(env or {})
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                  stderr=subprocess.STDOUT, env=full, cwd=cwd,
                                  start_new_session=True)
        self.pid = self.p.pid
        tc.procs.append(self)
        log("started %s pid %d: %s", name, self.pid, " ".join(argv))

    def text(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tail(self):
        t = self.text()
        return t if len(t) <= SHOW else "...\n" + t[-SHOW:]

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        log("%s pid %d: signal %s", self.name, self.pid, signal.Signals(sig).name)
        self.p.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s (pid %d) still running after %.1f s\n--- %s log\n%s"
                                 % (self.name, self.pid, timeout, self.name, self.tail()))

    def wait_log(self, pattern, timeout=20):
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.text()), timeout,
                          lambda: "/%s/ in the %s log\n--- log\n%s" % (pattern, self.name,
                                                                       self.tail()))

    def kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


class RedisServer:
    """redis-server on a unix socket (and optionally 127.0.0.1:port) in a
    directory of its own; restartable with the same socket and directory."""

    def __init__(self, tc, name="redis", appendonly=False, port=0, extra=()):
        self.tc, self.name = tc, name
        self.dir = os.path.join(tc.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.appendonly, self.port, self.extra = appendonly, port, list(extra)
        self.password = None
        for i, a in enumerate(self.extra):
            if a == "--requirepass":
                self.password = self.extra[i + 1]
        self.proc = None
        self.starts = 0

    @property
    def url(self):
        return "redis+socket://" + self.sock

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--unixsocket", self.sock,
                "--unixsocketperm", "700", "--dir", self.dir, "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.port:
            argv += ["--bind", "127.0.0.1"]
        self.starts += 1
        self.proc = Proc(self.tc, "%s-%d" % (self.name, self.starts), argv + self.extra)
        c = self.client()
        wait_until(lambda: self._ping(c), 10, "redis-server to answer on %s" % self.sock)
        return self

    @staticmethod
    def _ping(c):
        try:
            return c.ping()
        except redis.exceptions.ConnectionError:
            return False
        except redis.exceptions.BusyLoadingError:
            return False

    def client(self, **kw):
        return redis.Redis(unix_socket_path=self.sock, password=self.password, **kw)

    def stop(self, sig=signal.SIGTERM):
        self.proc.signal(sig)
        rc = self.proc.wait(20)
        log("%s exited with %s", self.proc.name, rc)
        return rc


class WorkerTestCase(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if not os.access(KILN, os.X_OK):
            raise AssertionError("kiln binary not found: %s (set KILN_BIN)" % KILN)
        kilntest.become_subreaper()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kw-")
        os.chmod(self.tmp, 0o755)
        self.procs = []
        self.apps = []
        self.threads = []
        self.addCleanup(self._cleanup)

    # --- teardown ----------------------------------------------------------

    def _cleanup(self):
        for stop in self.threads:
            stop()
        for app in self.apps:
            try:
                app.close()
            except Exception:
                pass
        if True:  # ctest shows a test's output only when it fails
            for p in self.procs:
                if p.name.startswith("redis"):
                    continue
                sys.stderr.write("--- %s log (pid %d, %s)\n%s\n" % (
                    p.name, p.pid, "running" if p.alive() else "exit %s" % p.p.returncode,
                    p.tail()))
        for p in reversed(self.procs):
            p.kill_group()
        keep = {p.pid for p in self.procs}
        left = kilntest.descendants()
        for pid, _, _, _ in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while kilntest.descendants() and time.monotonic() < deadline:
            _reap_orphans(keep)
            time.sleep(0.05)
        _reap_orphans(keep)
        shutil.rmtree(self.tmp, True)

    # --- building blocks ---------------------------------------------------

    def assert_published(self, statuses, expected):
        """The states published for one task are `expected`, each optionally
        preceded by one STARTED (kiln writes STARTED only for a run still
        going after a few milliseconds, so a quick run has none)."""
        finals = [s for s in statuses if s != "STARTED"]
        self.assertEqual(finals, expected, statuses)
        for i, s in enumerate(statuses):
            if s == "STARTED":
                self.assertTrue(i + 1 < len(statuses) and statuses[i + 1] != "STARTED",
                                "STARTED not followed by the run's outcome: %r" % statuses)

    def plugin_dir(self, *names):
        """A fresh plugin directory (0755) holding copies of build/plugins/<name>.so."""
        d = tempfile.mkdtemp(prefix="plugins-", dir=self.tmp)
        os.chmod(d, 0o755)
        for n in names:
            src = os.path.join(PLUGINS, n + ".so")
            if not os.path.exists(src):
                raise AssertionError("plugin %s not built (%s)" % (n, src))
            dst = os.path.join(d, n + ".so")
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o755)
        return d

    def redis(self, **kw):
        return RedisServer(self, **kw).start()

    def write_config(self, cfg, name="kiln.json"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        os.chmod(path, 0o644)
        return path

    def worker(self, broker=None, plugins=None, config=None, args=(), env=None, name=None,
               verbose=True, wait=True):
        """Start `kiln worker`; with wait, return once it has registered in
        kiln:workers (the fetch loop is running).  The worker's id is .wid."""
        argv = [KILN, "worker"]
        if broker is not None:
            argv += ["--broker", broker.url if isinstance(broker, RedisServer) else broker]
        if plugins:
            argv += ["--plugins", plugins]
        if config is not None:
            argv += ["--config", config if isinstance(config, str) else self.write_config(
                config, "%s.json" % (name or "worker%d" % len(self.procs)))]
        if verbose:
            argv.append("-v")
        argv += list(args)
        n = sum(1 for p in self.procs if p.name.startswith("worker"))
        w = Proc(self, name or "worker%d" % (n + 1), argv, env=env)
        w.wid = None
        if wait:
            self.wait_registered(w, broker if isinstance(broker, RedisServer) else None)
        return w

    def wait_registered(self, w, server, timeout=30):
        """Wait for the worker's id in kiln:workers (written once it serves)."""
        c = server.client()
        mark = ":%d:" % w.pid

        def find():
            if not w.alive():
                raise AssertionError("%s exited with %s before serving\n--- log\n%s"
                                     % (w.name, w.p.returncode, w.tail()))
            for m in c.zrange("kiln:workers", 0, -1):
                m = m.decode()
                if mark in m:
                    return m
            return None
        w.wid = wait_until(find, timeout, lambda: "%s to register in kiln:workers\n--- log\n%s"
                           % (w.name, w.tail()))
        log("%s serving as %s", w.name, w.wid)
        return w.wid

    def celery(self, server, url=None, **conf):
        url = url or server.url
        app = Celery("kilntests", broker=url, backend=url, set_as_current=False)
        app.conf.update(task_serializer="json", result_serializer="json",
                        accept_content=["json"], result_accept_content=["json"],
                        broker_connection_retry_on_startup=False, **conf)
        self.apps.append(app)
        return app

    def python_worker(self, server, module_source, queues="celery", name="celery"):
        """A real Python Celery worker (-P solo) with the tasks in module_source."""
        d = os.path.join(self.tmp, "pyworker-" + name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "stubtasks.py"), "w") as f:
            f.write("from celery import Celery\n"
                    "app = Celery('stubtasks', broker=%r, backend=%r)\n"
                    "app.conf.update(accept_content=['json'], task_serializer='json',\n"
                    "                result_serializer='json', worker_hijack_root_logger=False)\n"
                    % (server.url, server.url))
            f.write(module_source)
        argv = [sys.executable, "-m", "celery", "-A", "stubtasks", "worker", "-P", "solo",
                "-Q", queues, "-l", "info", "--without-heartbeat", "--without-mingle",
                "--without-gossip", "-n", "%s@%%h" % name]
        env = {"PYTHONPATH": d, "PYTHONDONTWRITEBYTECODE": "1", "C_FORCE_ROOT": "1"}
        p = Proc(self, name, argv, env=env, cwd=d)
        p.wait_log(r"ready\.", 60)
        return p

    def subscribe_results(self, server):
        """Count every result PUBLISH: returns a dict (task id -> list of
        statuses, in order) filled by a thread until the test ends."""
        seen = {}
        ps = server.client().pubsub(ignore_subscribe_messages=True)
        ps.psubscribe("celery-task-meta-*")
        stop = threading.Event()

        def run():
            while not stop.is_set():
                try:
                    m = ps.get_message(timeout=0.1)
                except Exception as e:  # the server went away
                    log("result subscriber stopped: %r", e)
                    return
                if m and m["type"] == "pmessage":
                    meta = json.loads(m["data"])
                    seen.setdefault(meta["task_id"], []).append(meta["status"])
        t = threading.Thread(target=run, daemon=True)
        t.start()
        # psubscribe is confirmed before tasks are sent
        wait_until(lambda: server.client().pubsub_numpat() >= 1, 5, "the result subscriber")

        def halt():
            stop.set()
            t.join(2)
            try:
                ps.close()
            except Exception:
                pass
        self.threads.append(halt)
        seen["_stop"] = halt
        return seen

    # --- Redis inspection ----------------------------------------------------

    @staticmethod
    def meta(c, task_id):
        raw = c.get("celery-task-meta-" + task_id)
        return json.loads(raw) if raw else None

    @staticmethod
    def inflight(c):
        """{worker id: number of in-flight entries} for every in-flight hash."""
        out = {}
        for k in c.scan_iter("kiln:inflight:*"):
            out[k.decode()[len("kiln:inflight:"):]] = c.hlen(k)
        return out

    @staticmethod
    def dlq(c):
        return [json.loads(e) for e in c.lrange("kiln:dlq", 0, -1)]

    def orphans(self):
        """Live processes re-parented to this test (a subreaper) that it did
        not start itself, and their descendants: what an exited kiln left."""
        me, tracked = os.getpid(), {p.pid for p in self.procs}
        table = kilntest.proc_table()
        out = []
        for pid, (ppid, state, comm) in table.items():
            if ppid == me and pid not in tracked and state != "Z":
                out.append((pid, comm, kilntest._cmdline(pid)))
                out += [(d[0], d[2], d[3]) for d in kilntest.descendants(pid)]
        return out

    def assert_no_leftovers(self, what):
        """Nothing an exited kiln started is still alive (children follow
        their supervisor out within a few seconds)."""
        try:
            wait_until(lambda: not self.orphans(), 5, "no orphans")
        except AssertionError:
            self.fail("processes left behind after %s: %r" % (what, self.orphans()))


def parse_date(s):
    return datetime.datetime.fromisoformat(s)


def main():
    unittest.main(verbosity=2)
