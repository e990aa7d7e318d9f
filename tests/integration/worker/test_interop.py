#!/usr/bin/python3
"""Celery interop both ways (issue 3, sections 1 and 9).

Python's Celery client sends, kiln runs, Python reads the value, the
exception, and the STARTED / PROGRESS / RETRY states; messages kiln produces
(`kiln submit`, and kiln's own retry messages) are run by a real Python
Celery worker.

Usage: test_interop.py [WorkerTest.test_NAME ...]
"""

import base64
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import KILN, WorkerTestCase, log, main, parse_date, wait_until  # noqa: E402

# The keys Celery's Redis result backend writes for a finished task.
CELERY_META_KEYS = {"status", "result", "traceback", "children", "date_done", "task_id"}


def dedupe(seq):
    out = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


class WorkerTest(WorkerTestCase):

    def poll_states(self, app, task_id, timeout=30):
        """Every distinct (status, result) the backend shows until the task
        is ready, in order, as Celery's own backend decodes them."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = app.backend.get_task_meta(task_id)
            st, res = m["status"], m["result"]
            key = (st, json.dumps(res, sort_keys=True, default=repr))
            if not seen or seen[-1][0] != key:
                seen.append((key, st, res))
            if st in ("SUCCESS", "FAILURE", "REVOKED"):
                return [(s, r) for _, s, r in seen]
            time.sleep(0.01)
        raise AssertionError("task %s not ready after %d s; states %r" % (task_id, timeout, seen))

    def test_echo(self):
        srv = self.redis()
        c = srv.client()
        self.worker(srv, self.plugin_dir("hello"))
        app = self.celery(srv)
        args = [1, "two", {"three": [3.5, None, True]}, "\u00fcn\u00efcode \u2603", -2 ** 40]
        r = app.send_task("hello.echo", args=args)
        self.assertEqual(r.get(timeout=20), args)
        self.assertEqual(r.state, "SUCCESS")
        meta = self.meta(c, r.id)
        log("result meta: %r", meta)
        self.assertTrue(CELERY_META_KEYS <= set(meta), meta)
        self.assertEqual((meta["status"], meta["task_id"], meta["traceback"], meta["children"]),
                         ("SUCCESS", r.id, None, []))
        parse_date(meta["date_done"])
        ttl = c.ttl("celery-task-meta-" + r.id)
        self.assertTrue(0 < ttl <= 86400, "the result expires (Celery's default 1 day): %d" % ttl)
        # acked: nothing left in the queue or in flight
        self.assertEqual(c.llen("celery"), 0)
        self.assertEqual(self.inflight(c), {})

    def test_fail(self):
        srv = self.redis()
        self.worker(srv, self.plugin_dir("hello"))
        app = self.celery(srv)
        msg = "bad input: \u00fc \"quoted\""
        r = app.send_task("hello.fail", args=[msg])
        with self.assertRaises(ValueError) as cm:
            r.get(timeout=20)
        self.assertIs(type(cm.exception), ValueError)
        self.assertEqual(str(cm.exception), msg)
        self.assertEqual(r.state, "FAILURE")
        meta = self.meta(srv.client(), r.id)
        self.assertEqual(meta["result"]["exc_type"], "ValueError")
        self.assertEqual(meta["result"]["exc_message"], [msg])
        self.assertEqual(meta["result"]["exc_module"], "builtins")

    def test_progress(self):
        srv = self.redis()
        self.worker(srv, self.plugin_dir("testtasks"))
        app = self.celery(srv)
        r = app.send_task("t.progress", args=[0.4])
        # While it runs, AsyncResult itself shows PROGRESS with .info.
        wait_until(lambda: app.AsyncResult(r.id).state == "PROGRESS", 10, "state PROGRESS")
        ar = app.AsyncResult(r.id)
        info = ar.info
        self.assertIsInstance(info, dict)
        self.assertEqual(set(info), {"fraction", "message"})
        seen = self.poll_states(app, r.id)
        log("states: %r", seen)
        # Earlier states were observed before the poll loop started; repeat
        # the whole run from a fresh task to see the complete sequence.
        r2 = app.send_task("t.progress", args=[0.4])
        seen = self.poll_states(app, r2.id)
        log("states: %r", seen)
        if seen[0][0] == "PENDING":
            seen = seen[1:]
        self.assertEqual(seen, [
            ("STARTED", None),
            ("PROGRESS", {"fraction": 0.25, "message": "quarter"}),
            ("PROGRESS", {"fraction": 0.5, "message": "half"}),
            ("PROGRESS", {"fraction": 1.0, "message": "finished"}),
            ("SUCCESS", "done"),
        ])
        self.assertEqual(r2.get(timeout=5), "done")

    def test_retry(self):
        srv = self.redis()
        c = srv.client()
        self.worker(srv, self.plugin_dir("testtasks"),
                    config={"tasks": {"t.retry": {"max_retries": 20}}})
        app = self.celery(srv)
        pubs = self.subscribe_results(srv)
        r = app.send_task("t.retry", kwargs={"until": time.time() + 0.8})
        seen, eta_while_retry = [], []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = app.AsyncResult(r.id).state
            if st == "RETRY":
                eta_while_retry.append(c.zcard("kiln:eta"))
            if not seen or seen[-1] != st:
                seen.append(st)
            if st in ("SUCCESS", "FAILURE"):
                break
            time.sleep(0.005)
        log("states seen: %r", seen)
        self.assertIn("RETRY", seen)
        self.assertEqual(seen[-1], "SUCCESS")
        self.assertLess(seen.index("RETRY"), seen.index("SUCCESS"))
        self.assertEqual(r.get(timeout=5), "done")
        self.assertIn(1, eta_while_retry, "a retry waits in kiln:eta")
        time.sleep(0.3)
        statuses = pubs[r.id]
        log("published: %r", statuses)
        n = statuses.count("RETRY")
        # 0.8 s of retries every 0.2 s: 3 to 5 retries.
        self.assertTrue(3 <= n <= 5, statuses)
        self.assert_published(statuses, ["RETRY"] * n + ["SUCCESS"])
        self.assertEqual(c.zcard("kiln:eta"), 0)

    def test_retry_exhausted(self):
        srv = self.redis()
        self.worker(srv, self.plugin_dir("testtasks"),
                    config={"tasks": {"t.retry": {"max_retries": 2}}})
        app = self.celery(srv)
        pubs = self.subscribe_results(srv)
        r = app.send_task("t.retry", kwargs={"until": time.time() + 3600, "countdown": 0.1})
        with self.assertRaises(Exception) as cm:
            r.get(timeout=20)
        e = cm.exception
        log("raised %s.%s: %s", type(e).__module__, type(e).__name__, e)
        self.assertEqual(type(e).__name__, "MaxRetriesExceededError")
        self.assertIn("gave up after 2 retries", str(e))
        time.sleep(0.3)
        # exactly three runs: the first and two retries
        self.assert_published(pubs[r.id], ["RETRY", "RETRY", "FAILURE"])

    def test_started_only_when_running(self):
        """STARTED is published for a task still running after a couple of
        milliseconds, and skipped for one that finished sooner (it would be
        overwritten before any poller could see it)."""
        srv = self.redis()
        self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "1"])
        app = self.celery(srv)
        pubs = self.subscribe_results(srv)
        slow = app.send_task("t.sleep", args=[0.3])
        slow.get(timeout=20)
        fast = [app.send_task("t.echo", args=[i]) for i in range(200)]
        self.assertEqual([r.get(timeout=20) for r in fast], [[i] for i in range(200)])
        time.sleep(0.3)
        self.assertEqual(pubs[slow.id], ["STARTED", "SUCCESS"])
        skipped = sum(1 for r in fast if pubs[r.id] == ["SUCCESS"])
        for r in fast:
            self.assert_published(pubs[r.id], ["SUCCESS"])
        log("fast tasks that published no STARTED: %d of 200", skipped)
        self.assertGreater(skipped, 100, "most sub-millisecond tasks skip STARTED")

    def test_alias(self):
        srv = self.redis()
        self.worker(srv, self.plugin_dir("testtasks"),
                    config={"aliases": {"worker.bulk_email": "t.echo"}})
        app = self.celery(srv)
        r = app.send_task("worker.bulk_email", args=["to@example.com", 3])
        self.assertEqual(r.get(timeout=20), ["to@example.com", 3])

    # --- kiln produces, Python Celery consumes ---------------------------------

    STUB = (
        "@app.task(name='hello.echo', bind=True)\n"
        "def echo(self, *args, **kwargs):\n"
        "    return {'ran_by': 'celery', 'args': list(args), 'kwargs': kwargs,\n"
        "            'retries': self.request.retries, 'task': self.name}\n"
        "@app.task(name='t.retry', bind=True)\n"
        "def retry(self, *args, **kwargs):\n"
        "    return {'ran_by': 'celery', 'args': list(args), 'kwargs': kwargs,\n"
        "            'retries': self.request.retries, 'task': self.name}\n"
    )

    def test_kiln_submit_celery_worker(self):
        h = subprocess.run([KILN, "submit", "--help"], capture_output=True, text=True)
        if h.returncode != 0:
            self.skipTest("kiln submit is not built: %s" % (h.stderr.strip() or h.stdout.strip()))
        srv = self.redis()
        c = srv.client()
        env = dict(os.environ)
        env.pop("KILN_BROKER_URL", None)
        args, kwargs = [1, "two", {"3": [None]}], {"k": "\u00fc"}
        s = subprocess.run([KILN, "submit", "hello.echo", "--broker", srv.url,
                            "--args", json.dumps(args), "--kwargs", json.dumps(kwargs),
                            "--json"], capture_output=True, text=True, env=env, timeout=30)
        log("kiln submit: exit %d\nstdout %s\nstderr %s", s.returncode, s.stdout, s.stderr)
        self.assertEqual(s.returncode, 0)
        sent = json.loads(s.stdout)
        task_id = sent["id"]
        raw = c.lrange("celery", 0, -1)
        self.assertEqual(len(raw), 1, "kiln submit LPUSHed one message to kombu's queue list")
        env_msg = json.loads(raw[0])
        self.assertEqual(env_msg["headers"]["id"], task_id)
        self.assertEqual(env_msg["content-type"], "application/json")
        body = json.loads(base64.b64decode(env_msg["body"]))
        self.assertEqual(body[0], args)
        self.assertEqual(body[1], kwargs)
        self.python_worker(srv, self.STUB)
        app = self.celery(srv)
        res = app.AsyncResult(task_id).get(timeout=30)
        self.assertEqual(res, {"ran_by": "celery", "args": args, "kwargs": kwargs, "retries": 0,
                               "task": "hello.echo"})
        # and --wait prints the result a Python worker wrote
        s = subprocess.run([KILN, "submit", "hello.echo", "--broker", srv.url, "--args", "[7]",
                            "--wait", "--timeout", "30"], capture_output=True, text=True,
                           env=env, timeout=60)
        log("kiln submit --wait: exit %d\nstdout %s\nstderr %s", s.returncode, s.stdout,
            s.stderr)
        self.assertEqual(s.returncode, 0)
        self.assertEqual(json.loads(s.stdout.strip().splitlines()[-1]),
                         {"ran_by": "celery", "args": [7], "kwargs": {}, "retries": 0,
                          "task": "hello.echo"})

    def test_kiln_retry_celery_worker(self):
        """kiln's own retry message (retries + 1, eta) is a message a Python
        Celery worker runs: a mixed fleet can share a queue."""
        srv = self.redis()
        c = srv.client()
        w = self.worker(srv, self.plugin_dir("testtasks"),
                        config={"tasks": {"t.retry": {"max_retries": 5}}})
        app = self.celery(srv)
        kwargs = {"until": time.time() + 3600, "countdown": 4}
        r = app.send_task("t.retry", args=["a", 1], kwargs=kwargs)
        wait_until(lambda: app.AsyncResult(r.id).state == "RETRY", 20, "state RETRY")
        sent_retry = time.time()
        w.signal(15)
        self.assertEqual(w.wait(20), 0)
        eta = c.zrange("kiln:eta", 0, -1, withscores=True)
        self.assertEqual(len(eta), 1, eta)
        member, score = eta[0]
        queue, _, raw = member.partition(b"\n")
        self.assertEqual(queue, b"celery")
        self.assertAlmostEqual(score / 1000.0, sent_retry + 4, delta=1.0)
        msg = json.loads(raw)
        log("kiln's retry message: %s", raw.decode())
        self.assertEqual(msg["headers"]["id"], r.id)
        self.assertEqual(msg["headers"]["task"], "t.retry")
        self.assertEqual(msg["headers"]["retries"], 1)
        self.assertIsNotNone(msg["headers"]["eta"])
        # hand it to a Python Celery worker as is
        c.zrem("kiln:eta", member)
        c.lpush("celery", raw)
        self.python_worker(srv, self.STUB)
        res = app.AsyncResult(r.id).get(timeout=30)
        done = time.time()
        self.assertEqual(res, {"ran_by": "celery", "args": ["a", 1], "kwargs": kwargs,
                               "retries": 1, "task": "t.retry"})
        self.assertGreaterEqual(done, sent_retry + 3.5, "the Celery worker honoured the eta")


if __name__ == "__main__":
    main()
