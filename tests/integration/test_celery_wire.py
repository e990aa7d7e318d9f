#!/usr/bin/python3
"""The Celery wire format of runtime/celery.c against the real thing.

Each test starts a private redis-server on a unix socket in a temporary
folder.  The real Celery 5.2 client (send_task) writes messages that
celery_decode_tool (CELERY_TOOL) decodes; messages kiln encodes are consumed
by kombu and by a real `celery worker`; result metas kiln writes are read by
AsyncResult.  Run one test: test_celery_wire.py CeleryWireTest.test_<name>.
"""

import base64
import datetime
import errno
import gc
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import warnings
import zlib

import billiard.exceptions
import celery
import celery.exceptions
import kombu
import redis
from celery.app.task import Context

TOOL = os.environ.get("CELERY_TOOL", "celery_decode_tool")
SEP = "\x06\x16"

WORKER_TASKS = '''
import os
from celery import Celery

app = Celery("wiretasks", broker=os.environ["WIRE_BROKER"], backend=os.environ["WIRE_BROKER"])


@app.task(name="wire.add")
def add(x, y, scale=1):
    return (x + y) * scale


@app.task(name="wire.echo", bind=True)
def echo(self, *args, **kwargs):
    r = self.request
    return {"args": list(args), "kwargs": kwargs, "retries": r.retries, "root_id": r.root_id,
            "parent_id": r.parent_id, "group": r.group, "timelimit": list(r.timelimit or []),
            "eta": r.eta, "expires": r.expires, "routing_key": r.delivery_info.get("routing_key"),
            "priority": r.delivery_info.get("priority")}
'''


def tool(*argv, stdin=b""):
    """Run celery_decode_tool; its stdout."""
    p = subprocess.run([TOOL, *argv], input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise AssertionError(f"{TOOL} {' '.join(argv)}: exit {p.returncode}: {p.stderr!r}")
    return p.stdout


def decode(raw, max_body=None):
    argv = ["decode"] + ([str(max_body)] if max_body is not None else [])
    return json.loads(tool(*argv, stdin=raw))


def encode(**spec):
    return tool("encode", stdin=json.dumps(spec).encode()).strip()


def result_meta(**spec):
    return tool("result", stdin=json.dumps(spec).encode()).strip()


def iso_epoch(s):
    """Celery's ISO string (aware, or naive = UTC) to epoch seconds."""
    d = datetime.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()


class CeleryWireTest(unittest.TestCase):
    def setUp(self):
        # Each resource gets its cleanup as soon as it exists, so a setUp that
        # fails half-way still stops its redis-server.
        warnings.simplefilter("ignore", ResourceWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        self.dir = tempfile.mkdtemp(prefix="kiln-celery-wire-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.stop_process, self.redis_proc)
        self.r = redis.Redis(unix_socket_path=self.sock)
        self.addCleanup(self.r.close)
        # The socket file appears at bind(), before listen(): a connect in
        # between is refused, so wait for an answer, not for the file.
        deadline = time.time() + 20
        while True:
            try:
                if self.r.ping():
                    break
            except redis.exceptions.ConnectionError:
                pass
            if time.time() > deadline or self.redis_proc.poll() is not None:
                self.fail(f"redis-server did not answer (exit {self.redis_proc.poll()})")
            time.sleep(0.02)
        self.url = "redis+socket://" + self.sock
        self.app = celery.Celery("wire", broker=self.url, backend=self.url)
        self.addCleanup(self.app.close)
        # AsyncResult.__del__ talks to the backend: let it while Redis is up.
        self.addCleanup(gc.collect)
        self.worker = None

    @staticmethod
    def stop_process(proc):
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # ---------------------------------------------------------- helpers

    def pop_raw(self, key="celery"):
        raw = self.r.rpop(key)
        self.assertIsNotNone(raw, f"no message in {key!r}; keys {self.r.keys('*')}")
        return raw

    def start_worker(self):
        with open(os.path.join(self.dir, "wiretasks.py"), "w") as f:
            f.write(WORKER_TASKS)
        env = dict(os.environ, WIRE_BROKER=self.url, PYTHONPATH=self.dir)
        self.worker_log = open(os.path.join(self.dir, "worker.log"), "w+")
        self.worker = subprocess.Popen(
            ["/usr/bin/python3", "-m", "celery", "-A", "wiretasks", "worker", "-P", "solo",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info",
             "-Q", "celery", "-n", "wire@%h"],
            cwd=self.dir, env=env, stdout=self.worker_log, stderr=subprocess.STDOUT)
        self.addCleanup(self.worker_log.close)
        self.addCleanup(self.stop_process, self.worker)  # SIGTERM: a warm shutdown

    def worker_output(self):
        if self.worker is None:
            return ""
        self.worker_log.flush()
        self.worker_log.seek(0)
        return self.worker_log.read()

    def get(self, task_id, timeout=60):
        try:
            return self.app.AsyncResult(task_id).get(timeout=timeout, propagate=True)
        except celery.exceptions.TimeoutError:
            self.fail(f"no result for {task_id}; worker said:\n{self.worker_output()}")

    def push(self, envelope, priority=None):
        key = tool("queue-key", "celery", str(priority if priority is not None else 0)).decode()
        self.r.lpush(key, envelope)
        return key

    def store(self, task_id, meta):
        self.r.set("celery-task-meta-" + task_id, meta)

    # ------------------------------------------ Celery -> kiln (decode)

    def test_decode_send_task(self):
        args = [1, "\u00e9", 2.5, None, True, {"n": [1, 2]}]
        kwargs = {"x": "it's", "y": [None]}
        res = self.app.send_task("proj.add", args=args, kwargs=kwargs, countdown=30, expires=120,
                                 time_limit=30, soft_time_limit=20.5)
        raw = self.pop_raw()
        env = json.loads(raw)
        d = decode(raw)
        self.assertEqual(d["rc"], 0, d["error"])
        self.assertEqual(d["id"], res.id)
        self.assertEqual(d["task"], "proj.add")
        self.assertEqual(d["args"], args)
        self.assertEqual(d["kwargs"], kwargs)
        self.assertEqual(d["embed"], {"callbacks": None, "errbacks": None, "chain": None,
                                      "chord": None})
        self.assertEqual(d["retries"], 0)
        self.assertAlmostEqual(d["eta"], iso_epoch(env["headers"]["eta"]), places=5)
        self.assertAlmostEqual(d["eta"], time.time() + 30, delta=5)
        self.assertAlmostEqual(d["expires"], iso_epoch(env["headers"]["expires"]), places=5)
        self.assertEqual(d["time_limit"], 30)
        self.assertEqual(d["soft_time_limit"], 20.5)
        self.assertEqual(d["root_id"], res.id)
        self.assertEqual(d["parent_id"], "")
        self.assertEqual(d["group"], "")
        self.assertEqual(d["priority"], 0)
        self.assertEqual(d["routing_key"], "celery")
        self.assertEqual(d["reply_to"], env["properties"]["reply_to"])

        # The ids of a task in a workflow, and a retry count.
        res = self.app.send_task("proj.child", args=[], task_id="child-1", root_id="root-1",
                                 parent_id="parent-1", group_id="group-1", retries=3, queue="other")
        d = decode(self.pop_raw("other"))
        self.assertEqual(d["rc"], 0, d["error"])
        self.assertEqual((d["id"], d["root_id"], d["parent_id"], d["group"], d["retries"]),
                         ("child-1", "root-1", "parent-1", "group-1", 3))
        self.assertEqual(d["routing_key"], "other")
        self.assertEqual(d["args"], [])
        self.assertEqual(d["time_limit"], 0)

    def test_decode_gzip(self):
        args = ["x" * 20000, list(range(500))]
        res = self.app.send_task("proj.big", args=args, kwargs={"k": "v"}, compression="gzip")
        raw = self.pop_raw()
        env = json.loads(raw)
        self.assertEqual(env["headers"]["compression"], "application/x-gzip")
        d = decode(raw)
        self.assertEqual(d["rc"], 0, d["error"])
        self.assertEqual((d["id"], d["args"], d["kwargs"]), (res.id, args, {"k": "v"}))
        # Bounded: the same message with max_body below its plain size.
        plain = zlib.decompress(base64.b64decode(env["body"]))
        d = decode(raw, max_body=len(plain) - 1)
        self.assertEqual(d["rc"], -errno.E2BIG)
        self.assertIn("more than max_body", d["error"])
        self.assertEqual(d["id"], res.id)
        d = decode(raw, max_body=len(plain))
        self.assertEqual(d["rc"], 0, d["error"])
        # Other compressions are refused by name.
        res = self.app.send_task("proj.big", args=[1], compression="bzip2")
        d = decode(self.pop_raw())
        self.assertEqual(d["rc"], -errno.EPROTO)
        self.assertIn("headers.compression application/x-bz2 is not supported", d["error"])
        self.assertEqual((d["id"], d["task"]), (res.id, "proj.big"))

    def test_decode_priorities(self):
        for p in range(0, 11):
            res = self.app.send_task("proj.p", args=[p], priority=p)
            keys = [k for k in self.r.keys("celery*") if self.r.type(k) == b"list"]
            self.assertEqual(len(keys), 1, keys)
            expected = tool("queue-key", "celery", str(p))
            self.assertEqual(keys[0], expected, f"priority {p}")
            d = decode(self.pop_raw(keys[0]))
            self.assertEqual(d["rc"], 0, d["error"])
            self.assertEqual(d["id"], res.id)
            self.assertEqual(d["priority"], min(p, 9))

    def test_decode_pickle_refused(self):
        for serializer, ctype in (("pickle", "application/x-python-serialize"),
                                  ("yaml", "application/x-yaml")):
            res = self.app.send_task("proj.p", args=[1], serializer=serializer)
            d = decode(self.pop_raw())
            self.assertEqual(d["rc"], -errno.EMEDIUMTYPE, d)
            self.assertEqual(d["error"], f"content type {ctype} is not JSON; not deserialized")
            self.assertEqual((d["id"], d["task"]), (res.id, "proj.p"))

    # ------------------------------------------ kiln -> Celery (encode)

    def test_encode_matches_celery(self):
        args = [1, "it's", 2.5, None, True, {"n": [1, 2]}]
        kwargs = {"scale": 10, "name": "\u00e9"}
        self.app.send_task("proj.add", args=args, kwargs=kwargs, task_id="same-id", countdown=30,
                           expires=120, priority=7, time_limit=30, soft_time_limit=20,
                           parent_id="parent-1", root_id="root-1", group_id="group-1",
                           retries=2, queue="images")
        theirs = json.loads(self.pop_raw("images" + SEP + "6"))
        th = theirs["headers"]
        ours = json.loads(encode(task="proj.add", id="same-id", args=args, kwargs=kwargs,
                                 queue="images", priority=7, retries=2,
                                 eta=iso_epoch(th["eta"]), expires=iso_epoch(th["expires"]),
                                 time_limit=30, soft_time_limit=20, parent_id="parent-1",
                                 root_id="root-1", group="group-1", origin=th["origin"]))
        self.assertEqual(list(ours), list(theirs))
        self.assertEqual(list(ours["headers"]), list(th))
        self.assertEqual(list(ours["properties"]), list(theirs["properties"]))
        for k in ("content-encoding", "content-type"):
            self.assertEqual(ours[k], theirs[k])
        for k in th:
            if k in ("eta", "expires"):
                self.assertEqual(ours["headers"][k], th[k])  # same text, "+00:00" and all
            else:
                self.assertEqual(ours["headers"][k], th[k], k)
        op, tp = ours["properties"], theirs["properties"]
        for k in ("correlation_id", "delivery_mode", "delivery_info", "priority",
                  "body_encoding"):
            self.assertEqual(op[k], tp[k], k)
        self.assertEqual(op["reply_to"], "")
        self.assertAlmostEqual(int(op["expiration"]), int(tp["expiration"]), delta=5000)
        self.assertNotEqual(op["delivery_tag"], tp["delivery_tag"])
        self.assertEqual(json.loads(base64.b64decode(ours["body"])),
                         json.loads(base64.b64decode(theirs["body"])))
        # Byte for byte, where floats are not involved: the same text as
        # kombu's json.dumps once reply_to and the delivery tag are ours.
        args, kwargs = [1, "a\u00e9\n\"'", [True, None]], {"b": None, "\u00fc": {"c": []}}
        self.app.send_task("proj.x", args=args, kwargs=kwargs, task_id="id-2", queue="q2",
                           time_limit=10)
        raw = self.pop_raw("q2")
        theirs = json.loads(raw)
        ours = encode(task="proj.x", id="id-2", args=args, kwargs=kwargs, queue="q2",
                      time_limit=10, origin=theirs["headers"]["origin"])
        theirs["properties"]["reply_to"] = ""
        theirs["properties"]["delivery_tag"] = json.loads(ours)["properties"]["delivery_tag"]
        self.assertEqual(ours.decode(), json.dumps(theirs))

    def test_encode_kombu_decodes(self):
        env = encode(task="wire.add", id="k-1", args=[2, 3], kwargs={"scale": 10}, queue="celery",
                     priority=7, retries=1, time_limit=9, soft_time_limit=8)
        self.push(env, priority=7)
        with kombu.Connection(self.url) as conn:
            q = conn.SimpleQueue("celery")
            msg = q.get(timeout=10)
            self.assertEqual(msg.content_type, "application/json")
            self.assertEqual(msg.decode(), [[2, 3], {"scale": 10}, {
                "callbacks": None, "errbacks": None, "chain": None, "chord": None}])
            self.assertEqual(msg.headers["task"], "wire.add")
            self.assertEqual(msg.headers["id"], "k-1")
            self.assertEqual(msg.headers["retries"], 1)
            self.assertEqual(msg.headers["timelimit"], [9, 8])
            self.assertEqual(msg.properties["priority"], 7)
            msg.ack()
            q.close()

    def test_encode_worker_runs(self):
        self.start_worker()
        now = time.time()
        self.push(encode(task="wire.add", id="w-1", args=[2, 3], kwargs={"scale": 10}))
        self.push(encode(task="wire.echo", id="w-2", args=["a", 1], kwargs={"k": [1]},
                         priority=7, retries=2, time_limit=30, soft_time_limit=20,
                         root_id="root-x", parent_id="parent-x", group="group-x",
                         expires=now + 300), priority=7)
        self.push(encode(task="wire.echo", id="w-3", eta=now + 2))
        self.push(encode(task="wire.add", id="w-4", args=[1, 1], expires=now - 60))
        self.assertEqual(self.get("w-1"), 50)
        e = self.get("w-2")
        self.assertEqual(e["args"], ["a", 1])
        self.assertEqual(e["kwargs"], {"k": [1]})
        self.assertEqual(e["retries"], 2)
        self.assertEqual((e["root_id"], e["parent_id"], e["group"]),
                         ("root-x", "parent-x", "group-x"))
        self.assertEqual(e["timelimit"], [30, 20])
        self.assertEqual(e["routing_key"], "celery")
        self.assertEqual(e["priority"], 7)
        self.assertAlmostEqual(iso_epoch(e["expires"]), now + 300, delta=0.001)
        e = self.get("w-3")
        self.assertAlmostEqual(iso_epoch(e["eta"]), now + 2, delta=0.001)
        done = self.app.AsyncResult("w-3").date_done
        self.assertGreaterEqual(done.replace(tzinfo=datetime.timezone.utc).timestamp(),
                                now + 2 - 0.01)
        # Expired before it was received: the worker revokes it.
        with self.assertRaises(celery.exceptions.TaskRevokedError):
            self.get("w-4")
        self.assertEqual(self.app.AsyncResult("w-4").state, "REVOKED")

    def test_retry_worker_runs(self):
        # A Celery-made, compressed message; kiln retries it; a worker runs the retry.
        res = self.app.send_task("wire.echo", args=["r"], kwargs={"n": 1}, compression="gzip",
                                 time_limit=60)
        raw = self.pop_raw()
        eta = time.time() + 1
        retry = tool("retry", repr(eta), stdin=raw).strip()
        d = decode(retry)
        self.assertEqual(d["rc"], 0, d["error"])
        self.assertEqual((d["id"], d["retries"]), (res.id, 1))
        self.assertNotEqual(json.loads(retry)["properties"]["delivery_tag"],
                            json.loads(raw)["properties"]["delivery_tag"])
        self.start_worker()
        self.push(retry)
        e = self.get(res.id)
        self.assertEqual((e["args"], e["kwargs"], e["retries"]), (["r"], {"n": 1}, 1))
        self.assertEqual(e["timelimit"], [60, None])
        self.assertAlmostEqual(iso_epoch(e["eta"]), eta, delta=0.001)

    # ----------------------------------------------- kiln -> Celery results

    def test_result_success(self):
        value = {"a": [1, 2], "s": "\u00e9", "f": 0.5}
        self.store("r-1", result_meta(task_id="r-1", status="SUCCESS", result=value))
        ar = self.app.AsyncResult("r-1")
        self.assertEqual(ar.get(timeout=5), value)
        self.assertEqual(ar.state, "SUCCESS")
        self.assertTrue(ar.successful())
        self.assertIsNone(ar.traceback)
        self.assertAlmostEqual(ar.date_done.replace(tzinfo=datetime.timezone.utc).timestamp(),
                               time.time(), delta=10)
        # The same keys in the same order as Celery's own backend writes.
        self.app.backend.store_result("r-2", value, "SUCCESS", request=Context())
        theirs = json.loads(self.r.get("celery-task-meta-r-2"))
        ours = json.loads(result_meta(task_id="r-2", status="SUCCESS", result=value))
        self.assertEqual(list(ours), list(theirs))
        del ours["date_done"], theirs["date_done"]
        self.assertEqual(ours, theirs)

    def check_raises(self, exc_type, cls, message="it broke"):
        tid = "f-" + exc_type
        self.store(tid, result_meta(task_id=tid, status="FAILURE", exc_type=exc_type,
                                    exc_message=message, traceback="Traceback: kiln\n"))
        ar = self.app.AsyncResult(tid)
        self.assertEqual(ar.state, "FAILURE")
        self.assertEqual(ar.traceback, "Traceback: kiln\n")
        with self.assertRaises(cls) as cm:
            ar.get(timeout=5)
        self.assertEqual(type(cm.exception).__name__, exc_type)
        self.assertIn(message, str(cm.exception))
        self.assertIsInstance(ar.info, cls)
        return cm.exception

    def test_result_failure_builtin(self):
        self.check_raises("ValueError", ValueError)
        self.check_raises("KeyError", KeyError)
        self.check_raises("ZeroDivisionError", ZeroDivisionError)
        self.check_raises("MemoryError", MemoryError)
        # As Celery's backend stores a ValueError itself.
        try:
            raise ValueError("it broke")
        except ValueError as exc:
            self.app.backend.store_result("f-theirs", exc, "FAILURE", traceback="tb",
                                          request=Context())
        theirs = json.loads(self.r.get("celery-task-meta-f-theirs"))
        ours = json.loads(result_meta(task_id="f-theirs", status="FAILURE", exc_type="ValueError",
                                      exc_message="it broke", traceback="tb"))
        self.assertEqual(list(ours), list(theirs))
        self.assertEqual(ours["result"], theirs["result"])

    def test_result_time_limit(self):
        self.check_raises("TimeLimitExceeded", celery.exceptions.TimeLimitExceeded, "60.0")
        self.check_raises("SoftTimeLimitExceeded", celery.exceptions.SoftTimeLimitExceeded,
                          "30.0")

    def test_result_worker_lost(self):
        self.check_raises("WorkerLostError", billiard.exceptions.WorkerLostError,
                          "Worker exited prematurely: signal 9 (SIGKILL)")

    def test_result_kiln_only(self):
        exc = self.check_raises("MemoryLimitExceeded", Exception, "task used 600 MiB, limit 512")
        self.assertNotIsInstance(exc, MemoryError)

    def test_result_progress(self):
        info = {"current": 3, "total": 10}
        self.store("p-1", result_meta(task_id="p-1", status="PROGRESS", result=info))
        ar = self.app.AsyncResult("p-1")
        self.assertEqual(ar.state, "PROGRESS")
        self.assertEqual(ar.info, info)
        self.assertFalse(ar.ready())
        self.assertIsNone(ar.date_done)
        self.assertIsNone(json.loads(self.r.get("celery-task-meta-p-1"))["date_done"])

    def test_result_parent_group(self):
        self.app.backend.store_result("g-1", 7, "SUCCESS",
                                      request=Context(parent_id="parent-1", group="group-1"))
        theirs = json.loads(self.r.get("celery-task-meta-g-1"))
        ours = json.loads(result_meta(task_id="g-1", status="SUCCESS", result=7,
                                      parent_id="parent-1", group="group-1"))
        self.assertEqual(list(ours), list(theirs))
        del ours["date_done"], theirs["date_done"]
        self.assertEqual(ours, theirs)
        self.store("g-1", json.dumps(ours))
        self.assertEqual(self.app.AsyncResult("g-1").get(timeout=5), 7)


if __name__ == "__main__":
    unittest.main(verbosity=2)
