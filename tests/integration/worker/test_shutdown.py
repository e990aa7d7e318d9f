#!/usr/bin/python3
"""Warm and cold shutdown of `kiln worker` (issue 3, section 6).

SIGTERM: stop fetching, let the running task finish, write its result, exit
0, leave nothing in flight.  SIGQUIT, or SIGTERM twice: the running task's
message goes back to its queue at once, byte for byte, and another worker
completes it.

Usage: test_shutdown.py [WorkerTest.test_NAME ...]
"""

import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WorkerTestCase, log, main, wait_until  # noqa: E402


class WorkerTest(WorkerTestCase):

    def assert_unregistered(self, c, wid):
        self.assertEqual(self.inflight(c), {}, "nothing left in kiln:inflight:*")
        self.assertEqual(list(c.scan_iter("kiln:inflightq:*")), [])
        self.assertIsNone(c.zscore("kiln:workers", wid))
        self.assertFalse(c.exists("kiln:worker:" + wid))
        self.assertFalse(c.exists("kiln:hb:" + wid))

    def test_warm(self):
        srv = self.redis()
        c = srv.client()
        app = self.celery(srv)
        w = self.worker(srv, self.plugin_dir("hello"), args=["--concurrency", "1"])
        r = app.send_task("hello.sleep", args=[2])
        wait_until(lambda: app.AsyncResult(r.id).state == "STARTED", 10, "STARTED")
        # queued behind it: a warm shutdown must not take these
        waiting = [app.send_task("hello.echo", args=[i]) for i in range(3)]
        time.sleep(0.3)
        t0 = time.monotonic()
        w.signal(signal.SIGTERM)
        rc = w.wait(40)
        took = time.monotonic() - t0
        log("warm shutdown: exit %d after %.2f s", rc, took)
        self.assertEqual(rc, 0)
        w.wait_log(r"warm shutdown", 1)
        self.assertGreater(took, 1.0, "it waited for the running task")
        self.assertEqual(r.get(timeout=1), 2.0)
        self.assertEqual(r.state, "SUCCESS")
        self.assertEqual(c.llen("celery"), 3, "the queued tasks stay queued")
        for q in waiting:
            self.assertEqual(q.state, "PENDING")
        self.assert_unregistered(c, w.wid)
        self.assert_no_leftovers("a warm shutdown")

    def cold(self, how):
        srv = self.redis()
        c = srv.client()
        app = self.celery(srv)
        plugins = self.plugin_dir("hello")
        r = app.send_task("hello.sleep", args=[10])
        raw = c.lrange("celery", 0, -1)
        self.assertEqual(len(raw), 1)
        w1 = self.worker(srv, plugins, args=["--concurrency", "1"])
        wait_until(lambda: app.AsyncResult(r.id).state == "STARTED", 10, "STARTED")
        time.sleep(0.5)
        self.assertEqual(c.llen("celery"), 0)
        t0 = time.monotonic()
        how(w1)
        wait_until(lambda: c.llen("celery") == 1 and not self.inflight(c), 3,
                   lambda: "the message back in its queue (queue %d, in flight %r)"
                   % (c.llen("celery"), self.inflight(c)))
        back = time.monotonic() - t0
        rc = w1.wait(15)
        log("cold shutdown: message back in its queue after %.2f s; exit %d after %.2f s",
            back, rc, time.monotonic() - t0)
        self.assertLess(back, 2.0, "requeued at once, not after the 10 s task")
        self.assertEqual(c.lrange("celery", 0, -1), raw, "the same message, byte for byte")
        self.assertEqual(rc, 0)
        w1.wait_log(r"cold shutdown", 1)
        self.assert_unregistered(c, w1.wid)
        self.assert_no_leftovers("a cold shutdown")
        t1 = time.monotonic()
        self.worker(srv, plugins, args=["--concurrency", "1"])
        self.assertEqual(r.get(timeout=40), 10.0)
        self.assertGreater(time.monotonic() - t1, 9.5, "the second worker ran it in full")
        self.assertEqual((c.llen("celery"), self.inflight(c)), (0, {}))

    def test_cold_with_tasks_behind(self):
        """A cold shutdown while a child holds fast tasks behind a hung one:
        the hung task and every task behind it go back to the queue at once."""
        srv = self.redis()
        c = srv.client()
        app = self.celery(srv)
        w1 = self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "1"])
        for _ in range(40):  # known as fast
            app.send_task("t.sleep", args=[0]).get(timeout=20)
        hung = app.send_task("t.sleep", args=[30], queue="staged")
        rest = [app.send_task("t.sleep", args=[0], queue="staged") for _ in range(30)]
        c.rename("staged", "celery")
        wait_until(lambda: app.AsyncResult(hung.id).state == "STARTED", 10, "STARTED")
        held = sum(self.inflight(c).values())
        log("held in flight while the hung task runs: %d", held)
        self.assertGreater(held, 1, "tasks wait behind the hung one")
        t0 = time.monotonic()
        w1.signal(signal.SIGQUIT)
        wait_until(lambda: c.llen("celery") == 31 and not self.inflight(c), 4,
                   lambda: "all 31 back in the queue (queue %d, in flight %r)"
                   % (c.llen("celery"), self.inflight(c)))
        back = time.monotonic() - t0
        rc = w1.wait(15)
        log("cold shutdown with tasks behind: back after %.2f s, exit %d", back, rc)
        self.assertEqual(rc, 0)
        self.assertNotIn("unreachable", w1.text(), "no Redis trouble claimed")
        ids = {json.loads(m)["headers"]["id"] for m in c.lrange("celery", 0, -1)}
        self.assertEqual(ids, {hung.id} | {r.id for r in rest})

    def test_cold_sigquit(self):
        self.cold(lambda w: w.signal(signal.SIGQUIT))

    def test_cold_double_sigterm(self):
        def twice(w):
            w.signal(signal.SIGTERM)
            time.sleep(0.3)
            self.assertTrue(w.alive(), "one SIGTERM waits for the running task")
            w.signal(signal.SIGTERM)
        self.cold(twice)


if __name__ == "__main__":
    main()
