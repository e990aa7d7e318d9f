#!/usr/bin/python3
"""Benchmark the video plugin against the ffmpeg command line, in one run
(issue 4, part 6).  A script that prints figures, not a test.

  1. Sources: 10 s of testsrc2 at 25 fps with a stereo sine, encoded by
     ffmpeg as H.264 (x264 medium, 2 s GOPs) + AAC 128 kb/s in MP4, at 720p
     (4 Mb/s) and 1080p (8 Mb/s).
  2. For each source, alternating runs of kiln and ffmpeg (so both see the
     same machine load), the mean wall time of:
       thumbnail  kiln run video.so video.thumbnail --kwargs '{"at": 5}'   (JPEG)
                  ffmpeg -ss 5 -i IN -frames:v 1 OUT.jpg
       transcode  kiln run video.so video.transcode --kwargs '{"height": 480,
                  "crf": 23, "preset": "veryfast"}'   (AAC copied)
                  ffmpeg -i IN -vf scale=-2:480 -c:v libx264 -crf 23
                  -preset veryfast -c:a copy OUT.mp4
     and the ratio kiln / ffmpeg.  `kiln run` starts a supervisor, a
     sandboxed probe child (to read the plugin's policy) and a task child,
     the two children each loading FFmpeg's ~130 shared libraries; the fixed
     costs are measured on their own first: kiln run of examples/hello
     against `ffmpeg -version`, video.probe against ffprobe.
  3. The same tasks through `kiln worker` (a private redis-server on a unix
     socket, one warm child) and the Python Celery client: send to result.
  4. A check that the work is the same: PSNR of kiln's 480p output against
     ffmpeg's, beside that of two ffmpeg runs against each other.

usage: bench/video_bench.py [--build DIR] [--runs N] [--skip-worker] [--skip-1080p]

Needs: ffmpeg, and a kiln build with plugins/video.so; for the worker part,
redis-server, python3-celery and python3-redis.
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
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
T0 = time.monotonic()


def say(fmt, *a):
    sys.stderr.write("[%6.1f s] %s\n" % (time.monotonic() - T0, fmt % a if a else fmt))
    sys.stderr.flush()


def run(argv, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        raise SystemExit("failed: %s\n%s%s" % (" ".join(argv), r.stdout.decode(),
                                                r.stderr.decode()))
    return r.stdout.decode()


def timed(argv):
    t = time.monotonic()
    run(argv)
    return time.monotonic() - t


def make_source(path, size, bitrate):
    run(["ffmpeg", "-v", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=%s:rate=25" % size,
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", "10", "-c:v", "libx264", "-preset", "medium", "-b:v", bitrate,
         "-maxrate", bitrate, "-bufsize", "2M", "-g", "50", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-ac", "2", path])
    os.chmod(path, 0o644)


class Bench:
    def __init__(self, args):
        self.args = args
        self.kiln = os.path.join(args.build, "kiln")
        self.plugin = os.path.join(args.build, "plugins", "video.so")
        for p in (self.kiln, self.plugin):
            if not os.path.exists(p):
                raise SystemExit("not built: %s (cmake --build %s)" % (p, args.build))
        self.tmp = tempfile.mkdtemp(prefix="kiln-video-bench-")
        os.chmod(self.tmp, 0o755)
        self.rows = []

    def path(self, name):
        return os.path.join(self.tmp, name)

    # --- the commands ----------------------------------------------------------

    def kiln_run(self, task, src, out, kwargs):
        argv = [self.kiln, "run", self.plugin, task, "--root", self.tmp,
                "--file", "input=" + src, "--kwargs", json.dumps(kwargs)]
        if out:
            argv += ["--out", "output=" + out]
        return argv

    def thumb_cmds(self, src, tag):
        return (self.kiln_run("video.thumbnail", src, self.path("k-%s.jpg" % tag), {"at": 5}),
                ["ffmpeg", "-v", "error", "-nostdin", "-y", "-ss", "5", "-i", src,
                 "-frames:v", "1", self.path("f-%s.jpg" % tag)])

    def transcode_cmds(self, src, tag):
        return (self.kiln_run("video.transcode", src, self.path("k-%s-480.mp4" % tag),
                              {"height": 480, "crf": 23, "preset": "veryfast"}),
                ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", src, "-vf", "scale=-2:480",
                 "-c:v", "libx264", "-crf", "23", "-preset", "veryfast", "-c:a", "copy",
                 self.path("f-%s-480.mp4" % tag)])

    # --- measuring -------------------------------------------------------------

    def compare(self, what, kiln_argv, ffmpeg_argv):
        """Alternate the two commands; one warm-up each, then --runs each."""
        timed(kiln_argv)
        timed(ffmpeg_argv)
        k, f = [], []
        for _ in range(self.args.runs):
            k.append(timed(kiln_argv))
            f.append(timed(ffmpeg_argv))
        self.row(what, k, f)

    def row(self, what, k, f):
        mk, mf = statistics.mean(k), statistics.mean(f)
        self.rows.append((what, mk, mf, mk / mf, min(k), min(f)))
        say("%-34s kiln %.3f s  ffmpeg %.3f s  ratio %.2f", what, mk, mf, mk / mf)

    def fixed_cost(self, src):
        """What starting costs: kiln run with a plugin that loads nothing
        (examples/hello) against `ffmpeg -version` (which loads FFmpeg's
        libraries and exits), then video.probe against ffprobe."""
        hello = os.path.join(self.args.build, "plugins", "hello.so")
        pairs = [("kiln run hello / ffmpeg -version",
                  [self.kiln, "run", hello, "hello.echo"], ["ffmpeg", "-version"]),
                 ("kiln run video.probe / ffprobe",
                  [self.kiln, "run", self.plugin, "video.probe", "--root", self.tmp,
                   "--file", "input=" + src],
                  ["ffprobe", "-v", "error", "-show_format", "-show_streams", src])]
        for what, kiln_argv, other in pairs:
            if os.path.exists(kiln_argv[2]):
                self.compare(what, kiln_argv, other)

    def psnr(self, a, b):
        out = subprocess.run(["ffmpeg", "-nostdin", "-i", a, "-i", b, "-lavfi",
                              "[0:v][1:v]psnr", "-f", "null", "-"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE).stderr.decode()
        m = re.search(r"PSNR .*average:(\S+)", out)
        return m.group(1) if m else "?"

    def same_pictures(self, tag, src):
        """PSNR of kiln's 480p output against ffmpeg's, and, for scale, of
        ffmpeg's against a second ffmpeg run (x264's threads make runs
        differ slightly)."""
        again = self.path("f-%s-480-again.mp4" % tag)
        argv = self.transcode_cmds(src, tag)[1]
        run(argv[:-1] + [again])
        theirs = self.path("f-%s-480.mp4" % tag)
        return self.psnr(self.path("k-%s-480.mp4" % tag), theirs), self.psnr(again, theirs)

    # --- through kiln worker ---------------------------------------------------

    def worker(self, sources):
        import celery.result
        import redis
        from celery import Celery

        # AsyncResult.__del__ unsubscribes, reconnecting if it must; at exit
        # the redis-server is gone (as in tests/integration/worker/harness.py).
        celery.result.AsyncResult.__del__ = lambda self: None

        sock = self.path("redis.sock")
        procs = []
        plugins = self.path("plugins")
        os.makedirs(plugins)
        os.chmod(plugins, 0o755)
        shutil.copy(self.plugin, plugins)
        cfg = self.path("kiln.json")
        with open(cfg, "w") as fh:
            json.dump({"roots": [self.tmp], "pools": {"video": {"concurrency": 1}}}, fh)
        try:
            procs.append(subprocess.Popen(
                ["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                 "--save", "", "--appendonly", "no", "--dir", self.tmp],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            c = redis.Redis(unix_socket_path=sock)
            for _ in range(100):
                try:
                    if c.ping():
                        break
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
            url = "redis+socket://" + sock
            log = open(self.path("worker.log"), "wb")
            procs.append(subprocess.Popen(
                [self.kiln, "worker", "--broker", url, "--plugins", plugins, "--config", cfg],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            app = Celery("bench", broker=url, backend=url)
            app.conf.update(task_serializer="json", result_serializer="json",
                            accept_content=["json"])

            def task(name, src, out, kwargs):
                kw = dict(kwargs, files={"input": src}, outputs={"output": out})
                t = time.monotonic()
                app.send_task(name, kwargs=kw).get(timeout=300)
                return time.monotonic() - t

            for tag, src in sources:
                kt, ft = self.thumb_cmds(src, tag)
                out = self.path("w-%s.jpg" % tag)
                task("video.thumbnail", src, out, {"at": 5})  # warm-up (and child start)
                timed(ft)
                k, f = [], []
                for _ in range(self.args.runs):
                    k.append(task("video.thumbnail", src, out, {"at": 5}))
                    f.append(timed(ft))
                self.row("worker thumbnail %s" % tag, k, f)
                kt, ft = self.transcode_cmds(src, tag)
                out = self.path("w-%s-480.mp4" % tag)
                k, f = [], []
                for _ in range(self.args.runs):
                    k.append(task("video.transcode", src, out,
                                  {"height": 480, "crf": 23, "preset": "veryfast"}))
                    f.append(timed(ft))
                self.row("worker transcode %s -> 480p" % tag, k, f)
        finally:
            for p in reversed(procs):
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(p.pid, signal.SIGKILL)

    # --- the run ---------------------------------------------------------------

    def main(self):
        say("temp dir %s; %d runs each; %s, %d CPUs, load %.1f", self.tmp, self.args.runs,
            platform.machine(), os.cpu_count(), os.getloadavg()[0])
        sources = [("720p", self.path("src720.mp4"), "1280x720", "4M")]
        if not self.args.skip_1080p:
            sources.append(("1080p", self.path("src1080.mp4"), "1920x1080", "8M"))
        for tag, path, size, rate in sources:
            say("making %s source (%s, 10 s, %s/s H.264 + AAC)", tag, size, rate)
            make_source(path, size, rate)
        self.fixed_cost(sources[0][1])
        psnr = {}
        for tag, path, _, _ in sources:
            self.compare("kiln run thumbnail %s at 5 s" % tag, *self.thumb_cmds(path, tag))
            self.compare("kiln run transcode %s -> 480p" % tag, *self.transcode_cmds(path, tag))
            psnr[tag] = self.same_pictures(tag, path)
        if not self.args.skip_worker:
            self.worker([(tag, path) for tag, path, _, _ in sources])
        print("video plugin vs ffmpeg %s (mean of %d runs; wall seconds; load average %.1f)"
              % (run(["ffmpeg", "-version"]).split()[2], self.args.runs, os.getloadavg()[0]))
        print("%-36s %9s %9s %7s %9s %9s" % ("", "kiln", "ffmpeg", "ratio", "kiln min",
                                            "ffmpeg min"))
        for what, mk, mf, ratio, nk, nf in self.rows:
            print("%-36s %9.3f %9.3f %7.2f %9.3f %9.3f" % (what, mk, mf, ratio, nk, nf))
        for tag, (v, ref) in psnr.items():
            print("480p from the %s source: PSNR kiln vs ffmpeg %s dB, ffmpeg vs ffmpeg again "
                  "%s dB (inf: the same pictures)" % (tag, v, ref))
        shutil.rmtree(self.tmp, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-worker", action="store_true")
    ap.add_argument("--skip-1080p", action="store_true")
    Bench(ap.parse_args()).main()


if __name__ == "__main__":
    main()
