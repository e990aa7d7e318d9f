#!/usr/bin/python3
"""Malformed and foreign messages (issue 3, section 1).

Non-JSON content types (a real Celery pickle message, a yaml one) are never
deserialized; broken JSON, bad base64, a missing task name, wrong types, an
oversized body and a task nobody serves all land in kiln:dlq with a reason
naming the cause, while the worker keeps serving the good messages sent
between them.

Usage: test_malformed.py [WorkerTest.test_NAME ...]
"""

import base64
import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WorkerTestCase, log, main, wait_until  # noqa: E402


class WorkerTest(WorkerTestCase):

    def test_dead_letters(self):
        srv = self.redis()
        c = srv.client()
        w = self.worker(srv, self.plugin_dir("hello"), config={"max_message_size": 1024})
        app = self.celery(srv)

        def celery_message(task="hello.echo", args=(1,), **kw):
            """A real Celery message, taken from a scratch queue."""
            r = app.send_task(task, args=list(args), queue="scratch", **kw)
            raw = c.rpop("scratch")
            return r.id, raw

        def mutate(fn):
            tid, raw = celery_message()
            m = json.loads(raw)
            fn(m)
            return tid, json.dumps(m).encode()

        def body(obj):
            return base64.b64encode(json.dumps(obj).encode()).decode()

        cases = []  # (name, task id or None, raw message, reason regex)
        tid, raw = celery_message(serializer="pickle")
        self.assertEqual(json.loads(raw)["content-type"], "application/x-python-serialize")
        cases.append(("pickle", tid, raw, r"(?i)pickle|x-python-serialize"))
        tid, raw = mutate(lambda m: m.update({"content-type": "application/x-yaml"}))
        cases.append(("yaml", tid, raw, r"(?i)yaml"))
        cases.append(("broken JSON", None, b'{"body": "W10=", "headers": {"task": ',
                      r"(?i)JSON"))
        tid, raw = mutate(lambda m: m.update({"body": "%%% not base64 %%%"}))
        cases.append(("bad base64", tid, raw, r"(?i)base64"))
        tid, raw = mutate(lambda m: m.update(
            {"body": base64.b64encode(b'[[1], {}, {"callbacks": ').decode()}))
        cases.append(("broken body JSON", tid, raw, r"(?i)body.*JSON"))
        tid, raw = mutate(lambda m: m["headers"].pop("task"))
        cases.append(("no task name", tid, raw, r"(?i)task"))
        tid, raw = mutate(lambda m: m.update({"body": body({"args": [1]})}))
        cases.append(("body not a list", tid, raw, r"(?i)body"))
        tid, raw = mutate(lambda m: m.update({"body": body(["not args", {}, {}])}))
        cases.append(("args not an array", tid, raw, r"(?i)args.*array|array.*args"))
        tid, raw = celery_message(args=["x" * 4000])
        cases.append(("over max_message_size", tid, raw, r"(?i)bytes|size|max"))
        tid, raw = celery_message(task="nobody.serves")
        cases.append(("unknown task", tid, raw, r"no plugin serves task nobody\.serves"))

        good = []
        for i, (name, _, raw, _) in enumerate(cases):
            c.lpush("celery", raw)
            good.append(app.send_task("hello.echo", args=[i]))
        for i, r in enumerate(good):
            self.assertEqual(r.get(timeout=20), [i], "the worker kept serving")
        wait_until(lambda: c.llen("kiln:dlq") >= len(cases), 10,
                   lambda: "%d dead letters (have %d)" % (len(cases), c.llen("kiln:dlq")))
        time.sleep(0.3)
        dlq = self.dlq(c)
        self.assertEqual(len(dlq), len(cases), json.dumps(dlq, indent=1)[:4000])
        by_message = {d["message"].encode(): d for d in dlq}
        for name, tid, raw, rx in cases:
            with self.subTest(name):
                d = by_message.get(raw)
                self.assertIsNotNone(d, "%s: its raw message is in kiln:dlq" % name)
                log("%-22s -> reason: %s", name, d["reason"])
                self.assertRegex(d["reason"], rx)
                self.assertEqual(d["queue"], "celery")
                if tid and name not in ("broken JSON",):
                    st = app.AsyncResult(tid).state
                    log("%-22s    Python sees state %s", name, st)
                    self.assertEqual(st, "FAILURE", "%s: its caller learns it failed" % name)
        # the unknown task's caller learns it failed, as NotRegistered
        unknown = [tid for name, tid, _, _ in cases if name == "unknown task"][0]
        with self.assertRaises(Exception) as cm:
            app.AsyncResult(unknown).get(timeout=5)
        self.assertEqual(type(cm.exception).__name__, "NotRegistered")
        self.assertTrue(w.alive())
        self.assertEqual((c.llen("celery"), self.inflight(c)), (0, {}))
        w.wait_log(r"no plugin serves task nobody\.serves", 1)


if __name__ == "__main__":
    main()
