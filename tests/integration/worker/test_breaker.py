#!/usr/bin/python3
"""Circuit breakers (issue 3, section 3).

A breaker named in the config opens after `failure_threshold` failures in a
row of the tasks behind it.  While it is open their tasks are deferred (they
wait in kiln:eta, state PENDING), not failed; after `reset_timeout` one
half-open probe runs: success closes the breaker and the deferred tasks run.
The breaker's state lives in Redis (kiln:breaker:<name>), shared by workers.

Usage: test_breaker.py [WorkerTest.test_NAME ...]
"""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WorkerTestCase, main, wait_until  # noqa: E402


class WorkerTest(WorkerTestCase):

    def test_open_defers_then_closes(self):
        srv = self.redis()
        c = srv.client()
        config = {
            "tasks": {"t.fail": {"breaker": "dep"}, "t.echo": {"breaker": "dep"}},
            "breakers": {"dep": {"failure_threshold": 2, "reset_timeout": 2}},
        }
        self.worker(srv, self.plugin_dir("testtasks"), config=config,
                    args=["--concurrency", "1"])
        app = self.celery(srv)

        # Two failures in a row open the breaker.
        for i in range(2):
            r = app.send_task("t.fail", args=["dependency down %d" % i])
            with self.assertRaises(ValueError):
                r.get(timeout=20)
        wait_until(lambda: c.hget("kiln:breaker:dep", "state") == b"open", 5,
                   "the breaker to open")

        # While open, a task behind the breaker is deferred, not failed.
        t0 = time.monotonic()
        r = app.send_task("t.echo", args=["after the outage"])
        wait_until(lambda: c.zcard("kiln:eta") == 1, 5, "the task deferred to kiln:eta")
        self.assertEqual(app.AsyncResult(r.id).state, "PENDING")
        self.assertIsNone(c.get("celery-task-meta-" + r.id))

        # After reset_timeout the half-open probe runs it; success closes the breaker.
        self.assertEqual(r.get(timeout=20), ["after the outage"])
        self.assertGreaterEqual(time.monotonic() - t0, 1.0, "it waited for the reset timeout")
        wait_until(lambda: c.hget("kiln:breaker:dep", "state") == b"closed", 5,
                   "the breaker to close")
        self.assertEqual(c.hget("kiln:breaker:dep", "failures"), b"0")
        # Closed: the next task runs at once.
        self.assertEqual(app.send_task("t.echo", args=[1]).get(timeout=10), [1])


if __name__ == "__main__":
    main()
