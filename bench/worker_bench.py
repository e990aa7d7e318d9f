#!/usr/bin/python3
"""Benchmark `kiln worker` against a Celery worker and BullMQ, in one run, on
one redis-server (issue 3, section 10).  A script that prints figures, not a
test.  See bench/README.md.

  1. kiln drains N pre-filled hello.echo messages in Celery's format (built by
     Celery's own send_task and kombu's Redis transport; only the final LPUSH
     is batched), results written, acks late; over the unix socket, then
     over TCP, then over the unix socket with children recycled every 1000
     tasks (the default is 10000: what frequent recycling costs).
  2. kiln's enqueue-to-handler-start latency at low load: one task every
     2 ms, the handler (testtasks t.now) reporting when it started.
  3. kiln's supervisor RSS while N tasks (plus ETA ones) wait in Redis and
     every child is busy.
  4. A Celery worker (prefork -c 2, worker_prefetch_multiplier=1,
     task_acks_late=True) on a smaller count: its rate, extrapolated.
  5. BullMQ (bench/bullmq_bench.mjs: one Worker, concurrency 50, no-op
     processor, jobs pre-filled with addBulk) on N jobs, over TCP.

usage: bench/worker_bench.py [--build DIR] [--n 100000] [--celery-n 2000]
                             [--latency-n 1000] [--skip-celery] [--skip-bullmq]

Needs: Debian's redis-server, python3-celery, python3-redis; node and
`npm install` in bench/ for BullMQ; a kiln build with its test plugins
(build/plugins/hello.so and testtasks.so).
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
import redis  # noqa: E402
from celery import Celery  # noqa: E402
from kombu.utils.json import dumps as kombu_dumps  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def say(fmt, *a):
    sys.stderr.write("[%7.1f s] %s\n" % (time.monotonic() - T0, fmt % a if a else fmt))
    sys.stderr.flush()


T0 = time.monotonic()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_until(pred, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit("benchmark: timed out waiting for %s" % what)
        time.sleep(interval)


def cpu_ticks(pid):
    """utime + stime of pid, plus cutime + cstime (its children already reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rfind(")") + 2:].split()
    return sum(int(x) for x in fields[11:15])


def tree(pid):
    """pid's live descendants."""
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    data = f.read()
            except OSError:
                continue
            ppid = int(data[data.rfind(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def rss_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="kiln-bench-")
        os.chmod(self.tmp, 0o755)
        self.procs = []
        self.build = os.path.abspath(args.build)
        self.kiln = os.path.join(self.build, "kiln")
        self.sock = os.path.join(self.tmp, "redis.sock")
        self.port = free_port()
        self.url_sock = "redis+socket://" + self.sock
        self.url_tcp = "redis://127.0.0.1:%d/0" % self.port
        self.figures = {}

    # --- processes ---------------------------------------------------------------

    def spawn(self, name, argv, env=None, cwd=None):
        log = open(os.path.join(self.tmp, name + ".log"), "ab")
        full = dict(os.environ)
        full.pop("KILN_BROKER_URL", None)
        full.update(env or {})
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=full, cwd=cwd, start_new_session=True)
        p.logpath = log.name
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=40):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        shutil.rmtree(self.tmp, True)

    def log_of(self, p):
        with open(p.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    # --- redis ---------------------------------------------------------------------

    def start_redis(self):
        # One server for all three: kiln and Celery on its unix socket, BullMQ
        # (and kiln, for comparison) on TCP.  No persistence: this measures the
        # queues, not the disk.
        self.redis_proc = self.spawn("redis", [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--unixsocket", self.sock, "--unixsocketperm", "700", "--save", "",
            "--appendonly", "no", "--dir", self.tmp])
        self.r = redis.Redis(unix_socket_path=self.sock)
        wait_until(self._ping, 10, "redis-server")
        self.redis_version = self.r.info("server")["redis_version"]

    def _ping(self):
        try:
            return self.r.ping()
        except redis.exceptions.ConnectionError:
            return False

    # --- Celery messages -----------------------------------------------------------------

    def celery_messages(self, n, task="hello.echo", args=lambda i: [i], **send_kw):
        """n messages exactly as Celery's send_task and kombu's Redis transport
        build them; only the transport's final LPUSH is replaced by a list."""
        app = Celery("bench", broker=self.url_sock, backend=self.url_sock, set_as_current=False)
        out = []
        conn = app.connection_for_write()
        chan = conn.default_channel
        chan._put = lambda queue, message, **kw: out.append(
            (message["headers"]["id"], kombu_dumps(message)))
        prod = app.amqp.Producer(chan, auto_declare=False)
        t = time.monotonic()
        for i in range(n):
            app.send_task(task, args=args(i), producer=prod, **send_kw)
        conn.release()
        app.close()
        say("built %d Celery %s messages in %.1f s", n, task, time.monotonic() - t)
        return out

    def stage(self, msgs, key="celery.staging"):
        """LPUSH in send order, as producers would: the oldest is consumed first."""
        p = self.r.pipeline(transaction=False)
        for i in range(0, len(msgs), 5000):
            p.lpush(key, *[m for _, m in msgs[i:i + 5000]])
            p.execute()

    # --- kiln ------------------------------------------------------------------------

    def plugin_dir(self, *names):
        d = tempfile.mkdtemp(prefix="plugins-", dir=self.tmp)
        os.chmod(d, 0o755)
        for n in names:
            src = os.path.join(self.build, "plugins", n + ".so")
            shutil.copyfile(src, os.path.join(d, n + ".so"))
            os.chmod(os.path.join(d, n + ".so"), 0o755)
        return d

    def start_kiln(self, name, url, plugins, extra=()):
        p = self.spawn(name, [self.kiln, "worker", "--broker", url, "--plugins", plugins]
                       + list(extra))
        mark = ":%d:" % p.pid

        def registered():
            if p.poll() is not None:
                raise SystemExit("kiln worker exited with %s:\n%s" % (p.returncode,
                                                                      self.log_of(p)))
            return any(mark in m.decode() for m in self.r.zrange("kiln:workers", 0, -1))
        wait_until(registered, 30, "kiln worker to register")
        p.wid = [m.decode() for m in self.r.zrange("kiln:workers", 0, -1) if mark in m.decode()][0]
        return p

    def drain(self, n, until_results, timeout, interval=0.002):
        """RENAME the staged list into the queue; return seconds until
        until_results() reports n results."""
        t0 = time.monotonic()
        self.r.rename("celery.staging", "celery")
        while True:
            got = until_results()
            if got >= n:
                return time.monotonic() - t0, got
            if time.monotonic() - t0 > timeout:
                return time.monotonic() - t0, got
            time.sleep(interval)

    def exact_results(self):
        return sum(1 for _ in self.r.scan_iter("celery-task-meta-*", count=10000))

    def verify(self, msgs, expect):
        sample = random.sample(range(len(msgs)), min(1000, len(msgs)))
        metas = self.r.mget(["celery-task-meta-" + msgs[i][0] for i in sample])
        bad = [(i, m) for i, m in zip(sample, metas)
               if not m or json.loads(m)["status"] != "SUCCESS"
               or json.loads(m)["result"] != expect(i)]
        if bad:
            raise SystemExit("benchmark: wrong results, e.g. %r" % (bad[:3],))

    def bench_kiln(self, msgs, url, label, extra=()):
        self.r.flushall()
        plugins = self.plugin_dir("hello")
        w = self.start_kiln("kiln-" + label.split(",")[0], url, plugins, extra)
        self.stage(msgs)
        # Keys now: the staged list and the worker's kiln:workers, kiln:worker:<wid>,
        # kiln:hb:<wid>.  While it drains, the queue list and its two in-flight
        # hashes come and go; every other new key is a result.
        base = self.r.dbsize() - 1
        counter = self.r.register_script(
            "return redis.call('DBSIZE') - redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3])")
        keys = ["celery", "kiln:inflight:" + w.wid, "kiln:inflightq:" + w.wid]
        n = len(msgs)
        hz = os.sysconf("SC_CLK_TCK")
        kids = tree(w.pid)
        before = (cpu_ticks(self.redis_proc.pid), cpu_ticks(w.pid),
                  sum(cpu_ticks(k) for k in kids))
        secs, _ = self.drain(n, lambda: counter(keys=keys) - base, 300)
        kids = tree(w.pid)  # the zygote's cutime holds children it reaped
        after = (cpu_ticks(self.redis_proc.pid), cpu_ticks(w.pid),
                 sum(cpu_ticks(k) for k in kids))
        cpu = [(a - b) / float(hz) for a, b in zip(after, before)]
        exact = self.exact_results()
        hwm = rss_kib(w.pid, "VmHWM") / 1024.0
        inflight = [k for k in self.r.scan_iter("kiln:inflight:*")]
        self.verify(msgs, lambda i: [i])
        self.stop(w)
        rate = n / secs
        say("kiln (%s): %d tasks in %.2f s = %.0f tasks/s (results: %d, in flight left: %d); "
            "CPU seconds: redis-server %.2f, supervisor %.2f, zygote and children %.2f; "
            "supervisor VmHWM %.1f MiB", label, n, secs, rate, exact, len(inflight), cpu[0],
            cpu[1], cpu[2], hwm)
        if exact != n or inflight:
            raise SystemExit("benchmark: kiln left %d results, %d in-flight hashes" % (
                exact, len(inflight)))
        return {"n": n, "seconds": secs, "rate": rate, "cpu_redis": cpu[0],
                "cpu_supervisor": cpu[1], "cpu_children": cpu[2], "hwm_mib": hwm}

    def bench_latency(self, count):
        self.r.flushall()
        plugins = self.plugin_dir("hello", "testtasks")
        w = self.start_kiln("kiln-latency", self.url_sock, plugins)
        msgs = self.celery_messages(count + 100, task="t.now", args=lambda i: [])
        warm, msgs = msgs[:100], msgs[100:]
        for _, m in warm:
            self.r.lpush("celery", m)
        wait_until(lambda: self.exact_results() >= 100, 30, "warm-up")
        sent = []
        for tid, m in msgs:
            t = time.time()
            self.r.lpush("celery", m)
            sent.append(t)
            time.sleep(0.002)
        ids = [tid for tid, _ in msgs]
        wait_until(lambda: all(self.r.mget(["celery-task-meta-" + i for i in ids])), 30,
                   "latency results")
        start_lat, done_lat = [], []
        for t, raw in zip(sent, self.r.mget(["celery-task-meta-" + i for i in ids])):
            meta = json.loads(raw)
            start_lat.append(meta["result"]["t"] - t)
            done = datetime.datetime.fromisoformat(meta["date_done"]).replace(
                tzinfo=datetime.timezone.utc).timestamp()
            done_lat.append(done - t)
        self.stop(w)

        def pct(xs, p):
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]
        out = {
            "n": count,
            "start_p50_ms": pct(start_lat, 50) * 1e3, "start_p99_ms": pct(start_lat, 99) * 1e3,
            "start_max_ms": max(start_lat) * 1e3, "start_mean_ms": statistics.mean(start_lat) * 1e3,
            "done_p50_ms": pct(done_lat, 50) * 1e3, "done_p99_ms": pct(done_lat, 99) * 1e3,
        }
        say("kiln latency (1 task / 2 ms, %d tasks): enqueue->handler start p50 %.3f ms, "
            "p99 %.3f ms, max %.3f ms; enqueue->result written p50 %.3f ms, p99 %.3f ms",
            count, out["start_p50_ms"], out["start_p99_ms"], out["start_max_ms"],
            out["done_p50_ms"], out["done_p99_ms"])
        return out

    def bench_rss(self, msgs, eta_n):
        self.r.flushall()
        plugins = self.plugin_dir("hello")
        w = self.start_kiln("kiln-rss", self.url_sock, plugins)
        eta = self.celery_messages(eta_n, countdown=3600)
        sleeps = self.celery_messages(2, task="hello.sleep", args=lambda i: [25])
        # ETA ones first (the worker moves them to kiln:eta), then a long task
        # per child, then the backlog.
        self.stage(eta + sleeps + msgs)
        self.r.rename("celery.staging", "celery")
        wait_until(lambda: self.r.zcard("kiln:eta") == eta_n, 60, "the ETA tasks in kiln:eta")
        wait_until(lambda: all(m and json.loads(m)["status"] == "STARTED" for m in self.r.mget(
            ["celery-task-meta-" + t for t, _ in sleeps])), 30, "both children busy")
        time.sleep(1.0)
        samples = []
        for _ in range(30):
            samples.append(rss_kib(w.pid))
            time.sleep(0.1)
        queued = self.r.llen("celery")
        hwm = rss_kib(w.pid, "VmHWM")
        inflight = sum(self.r.hlen(k) for k in self.r.scan_iter("kiln:inflight:*"))
        self.stop(w, signal.SIGQUIT)
        out = {"queued": queued, "eta": self.r.zcard("kiln:eta"), "in_flight": inflight,
               "rss_mib": max(samples) / 1024.0, "hwm_mib": hwm / 1024.0}
        say("kiln supervisor RSS with %d queued + %d in kiln:eta, both children busy, %d "
            "message(s) held in flight: VmRSS %.1f MiB (peak VmHWM %.1f MiB)", queued,
            out["eta"], inflight, out["rss_mib"], out["hwm_mib"])
        return out

    # --- Celery ----------------------------------------------------------------------------

    def bench_celery(self, msgs):
        self.r.flushall()
        d = os.path.join(self.tmp, "celeryapp")
        os.makedirs(d)
        with open(os.path.join(d, "hello_tasks.py"), "w") as f:
            f.write("from celery import Celery\n"
                    "app = Celery('hello_tasks', broker=%r, backend=%r)\n"
                    "app.conf.update(worker_prefetch_multiplier=1, task_acks_late=True,\n"
                    "                accept_content=['json'], task_serializer='json',\n"
                    "                result_serializer='json')\n"
                    "@app.task(name='hello.echo')\n"
                    "def echo(*args):\n"
                    "    return list(args)\n" % (self.url_sock, self.url_sock))
        w = self.spawn("celery", [sys.executable, "-m", "celery", "-A", "hello_tasks", "worker",
                                  "-P", "prefork", "-c", "2", "-Q", "celery", "-l", "info",
                                  "--without-gossip", "--without-mingle", "--without-heartbeat"],
                       env={"PYTHONPATH": d, "PYTHONDONTWRITEBYTECODE": "1", "C_FORCE_ROOT": "1"},
                       cwd=d)
        wait_until(lambda: "ready." in self.log_of(w), 60, "the Celery worker")
        self.stage(msgs)
        n = len(msgs)
        secs, got = self.drain(n, self.exact_results, self.args.celery_timeout, 0.05)
        self.stop(w, signal.SIGQUIT, 20)
        rate = got / secs
        say("Celery (prefork -c 2, prefetch 1, acks late): %d of %d tasks in %.2f s = %.1f "
            "tasks/s%s", got, n, secs, rate, "" if got == n else " (stopped at the time limit)")
        return {"n": n, "done": got, "seconds": secs, "rate": rate}

    # --- BullMQ -----------------------------------------------------------------------------

    def bench_bullmq(self, n):
        self.r.flushall()
        script = os.path.join(HERE, "bullmq_bench.mjs")
        if not os.path.isdir(os.path.join(HERE, "node_modules", "bullmq")):
            raise SystemExit("benchmark: run `npm install` in %s first (or --skip-bullmq)" % HERE)
        p = subprocess.run(["node", script, str(self.port), str(n), "50"], capture_output=True,
                           text=True, timeout=900)
        if p.returncode != 0:
            raise SystemExit("bullmq_bench.mjs failed:\n%s%s" % (p.stdout, p.stderr))
        out = json.loads(p.stdout.strip().splitlines()[-1])
        say("BullMQ %s (Worker concurrency 50, no-op): %d jobs in %.2f s = %.0f jobs/s "
            "(addBulk fill %.1f s; counts after %r)", out["bullmq"], n, out["elapsed_s"],
            out["rate"], out["fill_s"], out["counts"])
        return {"n": n, "seconds": out["elapsed_s"], "rate": out["rate"],
                "version": out["bullmq"]}

    # --- all -------------------------------------------------------------------------------

    def run(self):
        a = self.args
        self.start_redis()
        msgs = self.celery_messages(a.n)
        f = self.figures
        f["kiln_socket"] = self.bench_kiln(msgs, self.url_sock, "unix socket")
        f["kiln_tcp"] = self.bench_kiln(msgs, self.url_tcp, "tcp")
        # The same with children recycled every 1000 tasks (the default was
        # 1000 until session 3): what frequent recycling costs.
        cfg = os.path.join(self.tmp, "recycle1000.json")
        with open(cfg, "w") as fh:
            json.dump({"pools": {"hello": {"max_tasks_per_child": 1000}}}, fh)
        f["kiln_recycle1000"] = self.bench_kiln(msgs, self.url_sock,
                                                "unix socket, max_tasks_per_child 1000",
                                                ["--config", cfg])
        f["latency"] = self.bench_latency(a.latency_n)
        f["rss"] = self.bench_rss(msgs, a.eta_n)
        if not a.skip_celery:
            f["celery"] = self.bench_celery(msgs[:a.celery_n])
        if not a.skip_bullmq:
            f["bullmq"] = self.bench_bullmq(a.n)
        self.report()

    def machine(self):
        model = "?"
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        import celery
        return ("%d CPUs (%s), Linux %s, redis-server %s, Python %s, celery %s, node %s"
                % (os.cpu_count(), model, platform.release(), self.redis_version,
                   platform.python_version(), celery.__version__, node or "-"))

    def report(self):
        f = self.figures
        k = f["kiln_socket"]["rate"]
        print("\nkiln worker benchmark -- %s" % self.machine())
        print("%-58s %9s %9s %12s" % ("", "tasks", "seconds", "tasks/s"))
        rows = [("kiln worker, unix socket (2 sandboxed children)", f["kiln_socket"]),
                ("kiln worker, TCP 127.0.0.1 (2 sandboxed children)", f["kiln_tcp"]),
                ("kiln worker, unix socket, children recycled every 1000", f["kiln_recycle1000"])]
        if "bullmq" in f:
            rows.append(("BullMQ %s, TCP, 1 Worker concurrency 50, no-op"
                         % f["bullmq"]["version"], f["bullmq"]))
        if "celery" in f:
            rows.append(("Celery prefork -c 2, prefetch 1, acks late", f["celery"]))
        for name, r in rows:
            print("%-58s %9d %9.2f %12.1f" % (name, r.get("done", r["n"]), r["seconds"], r["rate"]))
        for label, key in (("unix socket", "kiln_socket"), ("TCP", "kiln_tcp")):
            r = f[key]
            print("kiln (%s) CPU seconds while draining: redis-server %.2f, supervisor %.2f, "
                  "zygote + children %.2f (wall %.2f s); supervisor VmHWM %.1f MiB" % (
                      label, r["cpu_redis"], r["cpu_supervisor"], r["cpu_children"], r["seconds"],
                      r["hwm_mib"]))
        if "bullmq" in f:
            print("kiln / BullMQ: %.2fx (unix socket), %.2fx (both over TCP)"
                  % (k / f["bullmq"]["rate"], f["kiln_tcp"]["rate"] / f["bullmq"]["rate"]))
        if "celery" in f:
            c = f["celery"]
            print("kiln / Celery: %.0fx  (Celery ran %d tasks; at its rate %d tasks would take "
                  "%.0f s: extrapolated, not measured)" % (k / c["rate"], c["done"], a_n(f),
                                                          a_n(f) / c["rate"]))
        lat = f["latency"]
        print("kiln enqueue -> handler start, 1 task every 2 ms (%d tasks): p50 %.3f ms, "
              "p99 %.3f ms, max %.3f ms" % (lat["n"], lat["start_p50_ms"], lat["start_p99_ms"],
                                            lat["start_max_ms"]))
        print("kiln enqueue -> result written, same tasks: p50 %.3f ms, p99 %.3f ms"
              % (lat["done_p50_ms"], lat["done_p99_ms"]))
        r = f["rss"]
        print("kiln supervisor VmRSS with %d tasks queued + %d in kiln:eta and every child busy "
              "(%d held in flight): %.1f MiB (VmHWM %.1f MiB)" % (
                  r["queued"], r["eta"], r["in_flight"], r["rss_mib"], r["hwm_mib"]))
        print(json.dumps(f, sort_keys=True))


def a_n(f):
    return f["kiln_socket"]["n"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="kiln build directory (kiln, plugins/hello.so, plugins/testtasks.so)")
    ap.add_argument("--n", type=int, default=100000, help="tasks for kiln and BullMQ")
    ap.add_argument("--celery-n", type=int, default=2000, help="tasks for Celery")
    ap.add_argument("--celery-timeout", type=float, default=240,
                    help="stop timing Celery after this many seconds")
    ap.add_argument("--latency-n", type=int, default=1000)
    ap.add_argument("--eta-n", type=int, default=10000,
                    help="ETA tasks waiting in kiln:eta during the RSS measurement")
    ap.add_argument("--skip-celery", action="store_true")
    ap.add_argument("--skip-bullmq", action="store_true")
    b = Bench(ap.parse_args())
    try:
        b.run()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
