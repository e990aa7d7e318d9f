#!/usr/bin/python3
"""Delivery guarantees of `kiln worker` (issue 3, sections 2, 3 and 9).

At-least-once across a SIGKILLed worker and a restarted Redis, poison
messages dead-lettered after N child deaths, queue precedence, no hoarding,
countdown and expires.  Tasks come from Python's Celery client; results are
read as Celery stores them.

Usage: test_delivery.py [WorkerTest.test_NAME ...]
"""

import datetime
import json
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WorkerTestCase, log, main, parse_date, wait_until  # noqa: E402

from celery.exceptions import TaskRevokedError  # noqa: E402


def task_id_of(raw):
    return json.loads(raw)["headers"]["id"]


class WorkerTest(WorkerTestCase):

    def send_many(self, app, task, argsets, queue=None):
        ids = []
        t0 = time.monotonic()
        with app.producer_or_acquire() as prod:
            for a in argsets:
                kw = {"queue": queue} if queue else {}
                ids.append(app.send_task(task, args=a, producer=prod, **kw).id)
        log("sent %d %s in %.2f s", len(ids), task, time.monotonic() - t0)
        return ids

    def metas(self, c, ids):
        out = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for tid, raw in zip(chunk, c.mget(["celery-task-meta-" + t for t in chunk])):
                out[tid] = json.loads(raw) if raw else None
        return out

    def wait_all_success(self, c, ids, timeout):
        def done():
            m = self.metas(c, ids)
            return m if all(v and v["status"] == "SUCCESS" for v in m.values()) else None

        def why():
            m = self.metas(c, ids)
            st = {}
            for v in m.values():
                k = v["status"] if v else "(no result)"
                st[k] = st.get(k, 0) + 1
            return ("every task SUCCESS; now %r; queue %d, eta %d, in flight %r"
                    % (st, c.llen("celery"), c.zcard("kiln:eta"), self.inflight(c)))
        return wait_until(done, timeout, why, interval=0.1)

    def count_success(self, c, ids):
        return sum(1 for v in self.metas(c, ids).values() if v and v["status"] == "SUCCESS")

    # --- at-least-once -------------------------------------------------------

    def test_sigkill_at_least_once(self):
        srv = self.redis()
        c = srv.client()
        plugins = self.plugin_dir("testtasks")
        cfg = {"heartbeat": 2}
        app = self.celery(srv)
        pubs = self.subscribe_results(srv)
        n = 1000
        ids = self.send_many(app, "t.mark", [[i, 0.004] for i in range(n)])
        w1 = self.worker(srv, plugins, config=cfg, args=["--concurrency", "2"])
        wait_until(lambda: self.count_success(c, ids) >= n * 0.3, 60, "30% done", 0.01)
        w1.signal(signal.SIGKILL)
        w1.wait(10)
        killed_at = time.monotonic()
        done_before = self.count_success(c, ids)
        # What the dead worker held: exactly what must come back.
        held = c.hvals("kiln:inflight:" + w1.wid)
        held_ids = {task_id_of(m) for m in held}
        log("SIGKILLed %s after %d of %d done; it held %d message(s) in flight",
            w1.wid, done_before, n, len(held))
        self.assertTrue(0 < done_before < n, "killed in the middle")
        self.assert_no_leftovers("SIGKILL of worker1's supervisor")
        w2 = self.worker(srv, plugins, config=cfg, args=["--concurrency", "2"])
        metas = self.wait_all_success(c, ids, 90)
        log("all %d SUCCESS %.1f s after the kill", n, time.monotonic() - killed_at)
        for i, tid in enumerate(ids):
            self.assertEqual(metas[tid]["result"], {"i": i})
        time.sleep(0.5)  # the last publishes
        pubs["_stop"]()
        runs = {t: pubs.get(t, []).count("PROGRESS") for t in ids}
        succ = {t: pubs.get(t, []).count("SUCCESS") for t in ids}
        rerun = sorted(t for t in ids if runs[t] > 1)
        dup_success = sorted(t for t in ids if succ[t] > 1)
        never = sorted(t for t in ids if runs[t] == 0)
        print("\nat-least-once: %d tasks, worker SIGKILLed after %d; %d in flight recovered; "
              "handler ran twice for %d task(s) (duplicates); result written twice for %d; "
              "lost 0" % (n, done_before, len(held), len(rerun), len(dup_success)))
        self.assertEqual(never, [], "every task's handler ran")
        # A task runs twice only if the killed worker held it: re-runs are
        # the recovered in-flight messages whose first run had started.
        self.assertTrue(set(rerun) <= held_ids, (rerun, held_ids))
        # Acks are atomic with the result write: no task completes twice.
        self.assertEqual(dup_success, [])
        w2.wait_log(r"recovered %d in-flight message" % len(held), 5)
        self.assertEqual(c.llen("celery"), 0)
        self.assertEqual(self.inflight(c), {})
        self.assertEqual([m.decode() for m in c.zrange("kiln:workers", 0, -1)], [w2.wid])
        self.assertFalse(c.exists("kiln:worker:" + w1.wid))

    def redis_restart(self, sig, extra=()):
        srv = self.redis(appendonly=True, extra=extra)
        c = srv.client()
        app = self.celery(srv)
        n = 600
        ids = self.send_many(app, "t.mark", [[i, 0.005] for i in range(n)])
        w = self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "2"])
        wait_until(lambda: self.count_success(c, ids) >= n * 0.25, 60, "25% done", 0.01)
        srv.stop(sig)
        down = time.monotonic()
        time.sleep(1.5)
        self.assertTrue(w.alive(), "the worker outlives its Redis")
        srv.start()
        log("Redis back after %.1f s with %d queued, %d in flight",
            time.monotonic() - down, c.llen("celery"), sum(self.inflight(c).values()))
        metas = self.wait_all_success(c, ids, 90)
        for i, tid in enumerate(ids):
            self.assertEqual(metas[tid]["result"], {"i": i})
        w.wait_log(r"Redis at .* is unreachable", 1)
        w.wait_log(r"Redis at .* is back", 1)
        self.assertTrue(w.alive())
        self.assertEqual(c.llen("celery"), 0)
        self.assertEqual(self.inflight(c), {})
        # and it still serves
        r = app.send_task("t.echo", args=["after"])
        self.assertEqual(r.get(timeout=20), ["after"])

    def test_redis_restart(self):
        """SIGTERM: Redis writes its append-only file and exits; restarted on
        the same socket and directory, it has every queue back."""
        self.redis_restart(signal.SIGTERM)

    def test_redis_killed_fsync_always(self):
        """SIGKILL, with appendfsync always: every write Redis confirmed is on
        disk, so a worker that only trusts confirmed writes loses nothing."""
        self.redis_restart(signal.SIGKILL, ["--appendfsync", "always"])

    # --- poison ----------------------------------------------------------------

    def poison(self, plugin, task, cause_rx, plugins=("hello",)):
        srv = self.redis()
        c = srv.client()
        cfg = {"poison_deaths": 3,
               "tasks": {task: {"max_retries": 10, "retry_backoff": 0.1, "retry_jitter": False}}}
        w = self.worker(srv, self.plugin_dir(plugin, *plugins), config=cfg)
        app = self.celery(srv)
        pubs = self.subscribe_results(srv)
        r = app.send_task(task)
        with self.assertRaises(Exception) as cm:
            r.get(timeout=90)
        e = cm.exception
        log("Python raised %s.%s: %s", type(e).__module__, type(e).__name__, e)
        self.assertEqual(r.state, "FAILURE")
        self.assertRegex(str(e), cause_rx)
        dlq = self.dlq(c)
        log("kiln:dlq: %s", json.dumps(dlq, indent=1)[:3000])
        self.assertEqual(len(dlq), 1)
        d = dlq[0]
        self.assertEqual((d["id"], d["task"], d["queue"]), (r.id, task, "celery"))
        self.assertEqual(len(d["deaths"]), 3, "the history of its 3 deaths")
        self.assertRegex(d["reason"], r"3 times")
        self.assertRegex(d["reason"], cause_rx)
        for death in d["deaths"]:
            self.assertRegex(death["type"] + ": " + death["message"], cause_rx)
            self.assertEqual(death["worker"], w.wid)
        msg = json.loads(d["message"])
        self.assertEqual(msg["headers"]["id"], r.id)
        self.assertEqual(msg["headers"]["retries"], 2, "the third attempt was dead-lettered")
        self.assertEqual(c.llen("kiln:deaths:" + r.id), 3)
        # The FAILURE is published by the script that dead-lettered it; the
        # subscriber may still be reading it.
        wait_until(lambda: "FAILURE" in pubs.get(r.id, []), 10,
                   lambda: "FAILURE published: %r" % (pubs.get(r.id),))
        self.assert_published(pubs[r.id], ["RETRY", "RETRY", "FAILURE"])
        self.assertEqual((c.llen("celery"), c.zcard("kiln:eta"), self.inflight(c)), (0, 0, {}))
        # the worker keeps serving
        self.assertTrue(w.alive())
        r2 = app.send_task("hello.echo", args=["still here"])
        self.assertEqual(r2.get(timeout=20), ["still here"])

    def test_memory_cap_poison(self):
        self.poison("hostile_malloc_bomb", "malloc_bomb.run", r"memory cap")

    def test_crash_poison(self):
        self.poison("testtasks", "t.crash", r"SIGSEGV")

    def test_max_rss_recycles(self):
        """A child whose RSS crossed the pool's max_rss is replaced after the task
        that crossed it; one that stayed below keeps serving."""
        srv = self.redis()
        self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "1"],
                    config={"pools": {"testtasks": {"max_rss": "24M"}}})
        app = self.celery(srv)
        first = app.send_task("t.pid").get(timeout=20)
        self.assertEqual(app.send_task("t.alloc", args=[2]).get(timeout=20), first,
                         "2 MiB: the same child ran it")
        self.assertEqual(app.send_task("t.pid").get(timeout=20), first, "and keeps serving")
        self.assertEqual(app.send_task("t.alloc", args=[40]).get(timeout=20), first,
                         "40 MiB: the task itself completes in its child")
        self.assertNotEqual(app.send_task("t.pid").get(timeout=20), first,
                            "the next task runs in a new child: the old one crossed max_rss")

    def test_recycling_staggered(self):
        """max_tasks_per_child recycles children, and the first two of a pool
        retire after staggered budgets (10 and 5 of 10), so they never restart
        at the same time; every task still runs once."""
        srv = self.redis()
        c = srv.client()
        w = self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "2"],
                        config={"pools": {"testtasks": {"max_tasks_per_child": 10}}})
        app = self.celery(srv)
        rs = [app.send_task("t.echo", args=[i], queue="staged") for i in range(60)]
        c.rename("staged", "celery")
        self.assertEqual([r.get(timeout=30) for r in rs], [[i] for i in range(60)])
        wait_until(lambda: len(re.findall(r"ran its \d+ tasks; recycling it", w.text())) >= 4,
                   10, "four recycles")
        first, later = {}, []
        for slot, budget in re.findall(r"\(slot (\d+)\) ran its (\d+) tasks; recycling it",
                                       w.text()):
            if slot in first:
                later.append(int(budget))
            else:
                first[slot] = int(budget)
        self.assertEqual(sorted(first.values()), [5, 10], w.tail())
        self.assertEqual(set(later), {10}, w.tail())

    def test_many_children_acks(self):
        """Eight children with fast tasks queued behind each finish more tasks
        per loop turn than one ack script can take: the acks go out in several
        calls, every result is written and nothing stays in flight."""
        srv = self.redis()
        c = srv.client()
        w = self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "8"])
        app = self.celery(srv)
        self.warm_fast(app, "t.echo")
        # 20,000 copies of one Celery message with fresh ids, staged at once.
        app.send_task("t.echo", args=[0], queue="tmpl")
        tmpl = json.loads(c.rpop("tmpl"))
        ids = []
        p = c.pipeline(transaction=False)
        for i in range(20000):
            m = json.loads(json.dumps(tmpl))
            tid = "many-%05d" % i
            m["headers"]["id"] = m["headers"]["root_id"] = tid
            m["properties"]["correlation_id"] = tid
            ids.append(tid)
            p.lpush("staged", json.dumps(m))
        p.execute()
        c.rename("staged", "celery")
        wait_until(lambda: c.llen("celery") == 0 and self.inflight(c) == {}, 60,
                   "the queue to drain\n" + w.tail())
        metas = c.mget(["celery-task-meta-" + t for t in ids])
        self.assertEqual(sum(1 for m in metas if m and json.loads(m)["status"] == "SUCCESS"),
                         20000)
        self.assertNotIn("cannot queue", w.text())

    def test_plugin_settings(self):
        """pools.<plugin>.settings reaches the plugin's children as
        kiln_settings(); a plugin without settings sees an empty object."""
        srv = self.redis()
        settings = {"max_pixels": 40000000, "formats": ["jpeg", "png"], "nested": {"a": 1.5}}
        self.worker(srv, self.plugin_dir("testtasks", "hello"), args=["--concurrency", "1"],
                    config={"pools": {"testtasks": {"settings": settings}}})
        app = self.celery(srv)
        self.assertEqual(app.send_task("t.settings").get(timeout=20), settings)

    # --- tasks sent behind a running one (fast tasks) ------------------------------

    def warm_fast(self, app, task, n=40):
        """Run `task` n times one by one so the worker knows it as fast."""
        for _ in range(n):
            app.send_task(task, args=[0]).get(timeout=20)

    def test_behind_child_crash(self):
        """A child that crashes with fast tasks queued behind the one it runs
        loses none of them: they run on its replacement, once each."""
        srv = self.redis()
        c = srv.client()
        w = self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "1"],
                        config={"tasks": {"t.echo": {"retry_on_death": False}}})
        app = self.celery(srv)
        # How many tasks sit behind the crashing one depends on timing (on a
        # loaded machine the worker may hold fewer): each round must lose
        # nothing, and some round must have had tasks behind the crash.
        for attempt in range(5):
            self.warm_fast(app, "t.echo")
            # Staged on a list the worker does not serve, then handed over at
            # once: the child has a backlog, so tasks wait behind the crash.
            before = [app.send_task("t.echo", args=[i], queue="staged") for i in range(20)]
            bad = app.send_task("t.echo", args=["boom"], kwargs={"crash": True}, queue="staged")
            after = [app.send_task("t.echo", args=[i], queue="staged") for i in range(20, 60)]
            c.rename("staged", "celery")
            for i, r in enumerate(before + after):
                self.assertEqual(r.get(timeout=30), [i])
            with self.assertRaises(Exception) as cm:
                bad.get(timeout=30)
            self.assertEqual(type(cm.exception).__name__, "WorkerLostError", cm.exception)
            self.assertRegex(str(cm.exception), "SIGSEGV")
            self.assertEqual((c.llen("celery"), self.inflight(c)), (0, {}))
            behind = [int(n) for n in re.findall(r"died with (\d+) task\(s\) sent behind",
                                                   w.text())]
            if any(n > 0 for n in behind):
                break
            log("round %d: no task was behind the crash; again", attempt + 1)
        self.assertTrue(any(n > 0 for n in behind),
                        "tasks were waiting behind the crash in some round\n" + w.tail())

    def test_behind_time_limit(self):
        """A task known as fast that hangs is killed at its hard limit; the fast
        tasks sent behind it run afterwards on a new child, none lost."""
        srv = self.redis()
        c = srv.client()
        w = self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "1"],
                        config={"tasks": {"t.sleep": {"retry_on_death": False}}})
        app = self.celery(srv)
        self.warm_fast(app, "t.sleep")
        hung = app.send_task("t.sleep", args=[30], time_limit=1, queue="staged")
        rest = [app.send_task("t.sleep", args=[0], queue="staged") for _ in range(30)]
        c.rename("staged", "celery")
        with self.assertRaises(Exception) as cm:
            hung.get(timeout=30)
        self.assertEqual(type(cm.exception).__name__, "TimeLimitExceeded", cm.exception)
        for r in rest:
            self.assertEqual(r.get(timeout=30), 0)
        self.assertEqual((c.llen("celery"), self.inflight(c)), (0, {}))
        m = re.search(r"died with (\d+) task\(s\) sent behind", w.text())
        self.assertTrue(m and int(m.group(1)) > 0, "tasks were waiting behind the hung one\n" +
                        w.tail())

    # --- fetching ----------------------------------------------------------------

    def test_queue_precedence(self):
        srv = self.redis()
        c = srv.client()
        app = self.celery(srv)
        # FIFO across queues would run slow first: it was sent first.
        ids = {}
        for q in ("slow", "normal", "urgent"):
            for i in range(5):
                ids[app.send_task("t.mark", args=["%s%d" % (q, i), 0.02], queue=q).id] = \
                    "%s%d" % (q, i)
        self.worker(srv, self.plugin_dir("testtasks"),
                    args=["--queues", "urgent,normal,slow", "--concurrency", "1"])
        metas = self.wait_all_success(c, list(ids), 30)
        order = [ids[t] for t in sorted(ids, key=lambda t: parse_date(metas[t]["date_done"]))]
        log("execution order: %s", " ".join(order))
        self.assertEqual(order, ["urgent%d" % i for i in range(5)] +
                         ["normal%d" % i for i in range(5)] + ["slow%d" % i for i in range(5)])
        # While busy with a slow task, newly sent urgent work goes next.
        slow = [app.send_task("t.mark", args=["late-slow%d" % i, 0.5], queue="slow")
                for i in range(3)]
        wait_until(lambda: app.AsyncResult(slow[0].id).state in ("STARTED", "PROGRESS"), 10,
                   "the first slow task to start")
        normal = app.send_task("t.mark", args=["late-normal", 0.02], queue="normal")
        urgent = app.send_task("t.mark", args=["late-urgent", 0.02], queue="urgent")
        rs = {r.id: a for r, a in [(slow[0], "late-slow0"), (slow[1], "late-slow1"),
                                   (slow[2], "late-slow2"), (normal, "late-normal"),
                                   (urgent, "late-urgent")]}
        metas = self.wait_all_success(c, list(rs), 30)
        order = [rs[t] for t in sorted(rs, key=lambda t: parse_date(metas[t]["date_done"]))]
        log("execution order: %s", " ".join(order))
        self.assertEqual(order, ["late-slow0", "late-urgent", "late-normal", "late-slow1",
                                 "late-slow2"])

    def test_no_hoarding(self):
        self.no_hoarding(warm=False)

    def test_no_hoarding_after_fast_tasks(self):
        """The same, in workers whose pool has just run a few hundred very
        fast tasks of the same plugin (a plugin serving fast and slow tasks):
        slow tasks must still not be fetched ahead."""
        self.no_hoarding(warm=True)

    def test_hold_scales_with_run_time(self):
        """A fast pool holds about 10 ms of work per child ahead of the
        running task: many messages for sub-millisecond tasks, one or two
        for 5 ms tasks."""
        srv = self.redis()
        c = srv.client()
        w = self.worker(srv, self.plugin_dir("testtasks"), args=["--concurrency", "1"])
        app = self.celery(srv)
        self.wait_all_success(c, self.send_many(app, "t.sleep", [[0.005]] * 60), 30)
        # Staged, then handed over at once: a backlog the worker could take.
        ids = self.send_many(app, "t.sleep", [[0.005]] * 150, queue="staged")
        c.rename("staged", "celery")
        most = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and c.llen("celery") > 20:
            most = max(most, c.hlen("kiln:inflight:" + w.wid))
            time.sleep(0.002)
        self.wait_all_success(c, ids, 30)
        log("5 ms tasks: at most %d held by a worker with one child", most)
        self.assertGreaterEqual(most, 1)
        self.assertLessEqual(most, 4, "about 10 ms of 5 ms tasks: the running one and 1-2 more")
        self.wait_all_success(c, self.send_many(app, "t.echo", [[i] for i in range(200)]), 30)
        ids = self.send_many(app, "t.echo", [[i] for i in range(2000)], queue="staged")
        c.rename("staged", "celery")
        most = 0
        while time.monotonic() < deadline + 30 and c.llen("celery") > 100:
            most = max(most, c.hlen("kiln:inflight:" + w.wid))
            time.sleep(0.001)
        self.wait_all_success(c, ids, 30)
        log("sub-millisecond tasks: at most %d held", most)
        self.assertGreater(most, 4, "sub-millisecond tasks are held deeper")
        self.assertLessEqual(most, 34, "never more than 32 ahead per child")

    def no_hoarding(self, warm):
        srv = self.redis()
        c = srv.client()
        plugins = self.plugin_dir("testtasks")
        w1 = self.worker(srv, plugins, args=["--concurrency", "1"])
        w2 = self.worker(srv, plugins, args=["--concurrency", "1"])
        app = self.celery(srv)
        if warm:
            fast = self.send_many(app, "t.echo", [[i] for i in range(400)])
            self.wait_all_success(c, fast, 30)
        t0 = time.monotonic()
        ids = self.send_many(app, "t.sleep", [[1.0]] * 10)
        held = {w1.wid: set(), w2.wid: set()}
        most = {w1.wid: 0, w2.wid: 0}
        samples = 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            p = c.pipeline(transaction=True)
            for wid in held:
                p.hvals("kiln:inflight:" + wid)
            got = p.execute()
            samples += 1
            for wid, vals in zip(held, got):
                most[wid] = max(most[wid], len(vals))
                held[wid] |= {task_id_of(v) for v in vals}
            if self.count_success(c, ids) == len(ids):
                break
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        self.wait_all_success(c, ids, 5)
        share = {wid: len(s) for wid, s in held.items()}
        print("\nno hoarding: %d samples; most held at once %r; tasks seen per worker %r; "
              "10 x 1 s in %.1f s" % (samples, most, share, elapsed))
        for wid in held:
            self.assertLessEqual(most[wid], 1, "%s held more than its one child" % wid)
            self.assertGreaterEqual(share[wid], 1, "%s got no work" % wid)
        self.assertEqual(held[w1.wid] | held[w2.wid], set(ids))
        self.assertLess(elapsed, 8.5, "two workers ran them in parallel")

    # --- countdown and expires -------------------------------------------------------

    def test_countdown(self):
        srv = self.redis()
        c = srv.client()
        self.worker(srv, self.plugin_dir("hello"))
        app = self.celery(srv)
        sent = datetime.datetime.now(datetime.timezone.utc)
        t0 = time.monotonic()
        r = app.send_task("hello.echo", args=["later"], countdown=2)
        wait_until(lambda: c.zcard("kiln:eta") == 1, 1.5, "the task in kiln:eta")
        waiting = []
        while time.monotonic() - t0 < 1.6:
            waiting.append((c.zcard("kiln:eta"), c.llen("celery"), sum(self.inflight(c).values()),
                            app.AsyncResult(r.id).state))
            time.sleep(0.1)
        log("while waiting (eta, queue, in flight, state): %r", sorted(set(waiting)))
        self.assertEqual(set(waiting), {(1, 0, 0, "PENDING")},
                         "it waits in kiln:eta, not in the worker")
        self.assertEqual(r.get(timeout=10), ["later"])
        took = time.monotonic() - t0
        done = parse_date(self.meta(c, r.id)["date_done"]).replace(tzinfo=datetime.timezone.utc)
        log("ran %.2f s after sending; date_done %s after sent", took, done - sent)
        self.assertGreaterEqual(done, sent + datetime.timedelta(seconds=2))
        self.assertLess(took, 4.0)
        self.assertEqual(c.zcard("kiln:eta"), 0)

    def test_expires(self):
        srv = self.redis()
        c = srv.client()
        self.worker(srv, self.plugin_dir("hello"))
        app = self.celery(srv)
        now = datetime.datetime.now(datetime.timezone.utc)
        past = app.send_task("hello.echo", args=["stale"],
                             expires=now - datetime.timedelta(seconds=30))
        with self.assertRaises(TaskRevokedError):
            past.get(timeout=20)
        self.assertEqual(past.state, "REVOKED")
        # expires while it waits for its countdown
        late = app.send_task("hello.echo", args=["late"], countdown=1.5, expires=0.5)
        fresh = app.send_task("hello.echo", args=["fresh"], expires=60)
        self.assertEqual(fresh.get(timeout=20), ["fresh"])
        with self.assertRaises(TaskRevokedError):
            late.get(timeout=20)
        self.assertEqual(late.state, "REVOKED")
        self.assertEqual((c.llen("celery"), c.zcard("kiln:eta"), self.inflight(c)), (0, 0, {}))


if __name__ == "__main__":
    main()
