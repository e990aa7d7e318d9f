#!/usr/bin/python3
"""Benchmark the image plugin's image.thumbnail against vipsthumbnail and
ImageMagick, in one run, on the same file (issue 4).  A script that prints
figures, not a test: nothing fails when a target is missed.

  1. A 24-megapixel photo-like JPEG (6000x4000: an ImageMagick plasma
     fractal drawn at 1500x1000, scaled up, with Gaussian noise, quality 90)
     thumbnailed to fit 256x256, quality 80, N times each, interleaved so
     that load on the machine hits all three alike:
       - `kiln run image.so image.thumbnail` (one process per task: kiln's
         start, the probe child and the task child included);
       - `vipsthumbnail FILE -s 256 -o OUT[Q=80]`;
       - `convert FILE -thumbnail 256x256 -quality 80 OUT` (ImageMagick).
  2. Through `kiln worker` on a private redis-server (unix socket), tasks
     sent with the Celery client (kwargs files/outputs): N tasks sent at
     once, per-task time = wall time of the batch / N, with one child and
     with one child per CPU; and single-task latency (send, wait for the
     result, N times).
  3. Peak RSS thumbnailing a 100-megapixel JPEG (10000x10000, the 24 MP one
     scaled up by libvips): the child's own peak (its getrusage ru_maxrss,
     which the runtime reads from every task's outcome and logs when it is
     above the pool's max_rss: the pool runs with max_rss 1M so that it
     always does), and wait4() on `kiln run` (the largest RSS of kiln and
     every descendant it waited for).  vipsthumbnail's for comparison.

usage: bench/image_bench.py [--build DIR] [--n 20] [--im-n N] [--keep]

Needs: a kiln build with plugins/image.so, ImageMagick (convert), libvips-tools
(vips, vipsthumbnail), redis-server, python3-celery, python3-redis.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
import celery.result  # noqa: E402
import redis  # noqa: E402
from celery import Celery  # noqa: E402

# AsyncResult.__del__ unsubscribes from the result channel, reconnecting if it
# must; once the benchmark's redis-server is gone that only prints noise.
celery.result.AsyncResult.__del__ = lambda self: None

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
T0 = time.monotonic()
MIB = 1 << 20


def say(fmt, *a):
    sys.stderr.write("[%7.1f s] %s\n" % (time.monotonic() - T0, fmt % a if a else fmt))
    sys.stderr.flush()


def tool(name):
    """The distribution's binary first (/usr/bin), then PATH."""
    p = shutil.which(name, path="/usr/bin:/bin") or shutil.which(name)
    if not p:
        raise SystemExit("benchmark: %s is not installed" % name)
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


def run_rss(argv):
    """Run argv to completion; (seconds, peak RSS in bytes of it and every
    descendant it waited for, stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)
        took = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("benchmark: %s failed:\n%s%s" % (" ".join(argv), o, e))
    return took, usage.ru_maxrss * 1024, o


def stats(xs):
    return statistics.mean(xs), statistics.median(xs)


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.kiln = os.path.join(self.build, "kiln")
        self.plugin = os.path.join(self.build, "plugins", "image.so")
        for p in (self.kiln, self.plugin):
            if not os.path.exists(p):
                raise SystemExit("benchmark: %s not found (build first)" % p)
        self.tmp = tempfile.mkdtemp(prefix="kiln-image-bench-")
        os.chmod(self.tmp, 0o755)  # the children run as unprivileged uids
        self.procs = []
        self.figures = {}

    def path(self, name):
        return os.path.join(self.tmp, name)

    # --- processes -------------------------------------------------------------

    def spawn(self, name, argv):
        log = open(self.path(name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        p.name, p.logpath = name, log.name
        self.procs.append(p)
        return p

    def log_of(self, p):
        with open(p.logpath, errors="replace") as f:
            return f.read()

    def stop(self, p):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def cleanup(self):
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()
        if self.args.keep:
            say("kept %s", self.tmp)
        else:
            shutil.rmtree(self.tmp, True)

    def start_redis(self):
        sock = self.path("redis.sock")
        self.spawn("redis", [tool("redis-server"), "--port", "0", "--unixsocket", sock,
                             "--unixsocketperm", "700", "--dir", self.tmp, "--save", "",
                             "--appendonly", "no"])
        self.r = redis.Redis(unix_socket_path=sock)

        def ping():
            try:
                return self.r.ping()
            except redis.exceptions.ConnectionError:
                return False
        wait_until(ping, 10, "redis-server")
        self.url = "redis+socket://" + sock

    def start_worker(self, name, concurrency, pool_extra=None):
        plugins = self.path("plugins-" + name)
        os.makedirs(plugins)
        os.chmod(plugins, 0o755)
        shutil.copyfile(self.plugin, os.path.join(plugins, "image.so"))
        os.chmod(os.path.join(plugins, "image.so"), 0o755)
        cfg = {"roots": [self.tmp], "pools": {"image": dict(concurrency=concurrency,
                                                            **(pool_extra or {}))}}
        cfgpath = self.path(name + ".json")
        with open(cfgpath, "w") as f:
            json.dump(cfg, f)
        self.r.flushall()
        p = self.spawn(name, [self.kiln, "worker", "--broker", self.url, "--plugins", plugins,
                              "--config", cfgpath, "-v"])
        mark = ":%d:" % p.pid

        def registered():
            if p.poll() is not None:
                raise SystemExit("kiln worker exited with %s:\n%s" % (p.returncode,
                                                                      self.log_of(p)))
            return any(mark in m.decode() for m in self.r.zrange("kiln:workers", 0, -1))
        wait_until(registered, 30, "kiln worker to register")
        return p

    def celery(self):
        app = Celery("imagebench", broker=self.url, backend=self.url, set_as_current=False)
        app.conf.update(task_serializer="json", result_serializer="json",
                        accept_content=["json"], result_accept_content=["json"])
        return app

    # --- inputs ------------------------------------------------------------------

    def make_inputs(self):
        self.src24 = self.path("photo24.jpg")
        say("making %s: 6000x4000 plasma fractal + noise, quality 90 (ImageMagick)", self.src24)
        subprocess.run([tool("convert"), "-seed", "42", "-size", "1500x1000", "plasma:fractal",
                        "-resize", "6000x4000!", "-attenuate", "0.6", "+noise", "Gaussian",
                        "-quality", "90", self.src24], check=True)
        self.src100 = self.path("photo100.jpg")
        say("making %s: the same scaled to 10000x10000 by libvips, quality 90", self.src100)
        subprocess.run([tool("vips"), "resize", self.src24, self.src100 + "[Q=90]",
                        "1.6666667", "--vscale", "2.5"], check=True)
        for p in (self.src24, self.src100):
            out = subprocess.run([tool("identify"), "-format", "%m %wx%h", p], check=True,
                                 capture_output=True, text=True).stdout
            say("  %s: %s, %.1f MB", os.path.basename(p), out, os.path.getsize(p) / 1e6)

    # --- 1. one process per task ------------------------------------------------

    def kiln_run_argv(self, src, dst):
        return [self.kiln, "run", self.plugin, "image.thumbnail", "--root", self.tmp,
                "--file", "input=" + src, "--out", "output=" + dst,
                "--kwargs", json.dumps({"width": 256})]

    def bench_processes(self):
        n, im_n = self.args.n, self.args.im_n
        cmds = {
            "kiln run": lambda i: self.kiln_run_argv(self.src24, self.path("k%d.jpg" % i)),
            "vipsthumbnail": lambda i: [tool("vipsthumbnail"), self.src24, "-s", "256",
                                        "-o", self.path("v%d.jpg[Q=80]" % i)],
            "ImageMagick": lambda i: [tool("convert"), self.src24, "-thumbnail", "256x256",
                                      "-quality", "80", self.path("m%d.jpg" % i)],
        }
        times = {k: [] for k in cmds}
        for k, c in cmds.items():  # warm the page cache and the dynamic loader
            run_rss(c(0))
        say("one process per task: %d runs each (ImageMagick %d), interleaved", n, im_n)
        for i in range(n):
            for k, c in cmds.items():
                if k == "ImageMagick" and i >= im_n:
                    continue
                times[k].append(run_rss(c(i))[0])
        dims = {k: subprocess.run([tool("identify"), "-format", "%wx%h", self.path(p)],
                                  capture_output=True, text=True).stdout
                for k, p in (("kiln", "k0.jpg"), ("vips", "v0.jpg"), ("IM", "m0.jpg"))}
        say("  outputs: %s", dims)
        vips_mean, vips_med = stats(times["vipsthumbnail"])
        print("\n1. 24 MP JPEG -> 256 px thumbnail, one process per task")
        print("   %-16s %10s %10s %8s %18s" % ("", "mean ms", "median ms", "runs",
                                              "median / vipsthumbnail"))
        for k, xs in times.items():
            mean, med = stats(xs)
            print("   %-16s %10.1f %10.1f %8d %17.2fx" % (k, mean * 1e3, med * 1e3, len(xs),
                                                          med / vips_med))
            self.figures["process_" + k] = {"mean_ms": mean * 1e3, "median_ms": med * 1e3,
                                            "runs": len(xs), "ratio_median": med / vips_med}
        self.vips_median = vips_med

    # --- 2. through the worker ----------------------------------------------------

    def bench_worker(self):
        n = self.args.n
        app = self.celery()
        print("\n2. 24 MP JPEG -> 256 px thumbnail through kiln worker (Celery client, "
              "redis-server on a unix socket)")
        for conc in (1, os.cpu_count()):
            w = self.start_worker("worker-c%d" % conc, conc)
            send = lambda i: app.send_task("image.thumbnail", kwargs={  # noqa: E731
                "files": {"input": self.src24},
                "outputs": {"output": self.path("w%d-%d.jpg" % (conc, i))}, "width": 256})
            for i in range(2 * conc):  # every child started and warm
                send(i).get(timeout=60)
            start = time.perf_counter()
            rs = [send(i) for i in range(n)]
            for r in rs:
                r.get(timeout=120)
            wall = time.perf_counter() - start
            per = wall / n
            line = ("   batch of %d, %d child%s: %.2f s wall, %.1f ms per task, %.2fx "
                    "vipsthumbnail's median" % (n, conc, "" if conc == 1 else "ren", wall,
                                                per * 1e3, per / self.vips_median))
            print(line)
            self.figures["worker_batch_c%d" % conc] = {"wall_s": wall, "per_task_ms": per * 1e3,
                                                       "ratio": per / self.vips_median}
            if conc == 1:
                lat = []
                for i in range(n):
                    s = time.perf_counter()
                    send(i).get(timeout=60)
                    lat.append(time.perf_counter() - s)
                mean, med = stats(lat)
                print("   single-task latency (send, wait for the result; %d times): mean "
                      "%.1f ms, median %.1f ms, %.2fx vipsthumbnail's median" % (
                          n, mean * 1e3, med * 1e3, med / self.vips_median))
                self.figures["worker_latency"] = {"mean_ms": mean * 1e3, "median_ms": med * 1e3,
                                                  "ratio_median": med / self.vips_median}
            self.stop(w)

    # --- 3. memory ------------------------------------------------------------------

    def bench_memory(self):
        print("\n3. Peak RSS thumbnailing the 100 MP JPEG (10000x10000) to 256 px")
        app = self.celery()
        w = self.start_worker("worker-rss", 1, {"max_rss": "1M"})
        app.send_task("image.thumbnail", kwargs={
            "files": {"input": self.src100}, "outputs": {"output": self.path("rss-w.jpg")},
            "width": 256}).get(timeout=120)
        m = wait_until(lambda: re.search(r"reached (\d+) MiB RSS, above max_rss",
                                         self.log_of(w)), 10, "the worker's RSS log line")
        child = int(m.group(1))
        self.stop(w)
        print("   kiln child, its own ru_maxrss (runtime log):        %4d MiB (target <= 64)"
              % child)
        _, tree, out = run_rss(self.kiln_run_argv(self.src100, self.path("rss-k.jpg")))
        print("   kiln run, wait4() max over kiln and its children:   %4.0f MiB   result %s"
              % (tree / MIB, out.strip()))
        _, vrss, _ = run_rss([tool("vipsthumbnail"), self.src100, "-s", "256",
                              "-o", self.path("rss-v.jpg[Q=80]")])
        print("   vipsthumbnail, wait4():                             %4.0f MiB" % (vrss / MIB))
        self.figures["rss_100mp"] = {"child_mib": child, "kiln_run_tree_mib": tree / MIB,
                                     "vipsthumbnail_mib": vrss / MIB}

    def run(self):
        try:
            print("image.thumbnail benchmark: %s, %d CPUs, libvips %s, load average %s" % (
                platform.platform(), os.cpu_count(),
                subprocess.run(["pkg-config", "--modversion", "vips"], capture_output=True,
                               text=True).stdout.strip(),
                " ".join("%.2f" % x for x in os.getloadavg())))
            self.make_inputs()
            self.bench_processes()
            self.start_redis()
            self.bench_worker()
            self.bench_memory()
            print("\nfigures: " + json.dumps(self.figures, sort_keys=True))
        finally:
            self.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--n", type=int, default=20, help="runs / tasks per measurement")
    ap.add_argument("--im-n", type=int, default=20, help="ImageMagick runs (it is slow)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    Bench(ap.parse_args()).run()


if __name__ == "__main__":
    main()
