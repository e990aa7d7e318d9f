#!/usr/bin/python3
"""The bundled video plugin (plugins/video, docs/plugins/video.md).

Every input is made during the test by ffmpeg's lavfi sources (testsrc2,
sine) in the test's temp directory (mode 0755: children run as unprivileged
uids); every output is checked with ffprobe, ImageMagick's identify/compare
or ffmpeg itself.  Tasks run through `kiln run` (single or --batch) and, for
progress and for a pool that meets bad inputs, through `kiln worker` with the
Python Celery client (tests/integration/worker/harness.py).

Usage: test_video.py [VideoTest.test_NAME ...]     (ctest runs one test each)

Environment: KILN_BIN (the kiln binary), KILN_PLUGINS (build/plugins, holding
video.so).
"""

import json
import math
import os
import re
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "hostile"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration", "worker"))
import kilntest  # noqa: E402
from harness import WorkerTestCase, log, main, wait_until  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
CAP = GIB  # the plugin's default memory cap per child
FRAME = 1 / 25.0  # the sources run at 25 fps


class VideoTest(WorkerTestCase):

    def setUp(self):
        super().setUp()
        self.video = kilntest.plugin("video")
        if not os.path.exists(self.video):
            raise AssertionError("video.so not built: %s" % self.video)

    # --- inputs and checks -------------------------------------------------

    def path(self, name):
        return os.path.join(self.tmp, name)

    def ffmpeg(self, *args):
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y"] + list(args), check=True)

    def source(self, name="in.mp4", seconds=3, size="320x240", audio=("-c:a", "aac"),
               extra=()):
        """A test video: testsrc2 at 25 fps in H.264, a 440 Hz sine beside it."""
        out = self.path(name)
        args = ["-f", "lavfi", "-i", "testsrc2=size=%s:rate=25" % size]
        if audio:
            args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
        args += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
                 "-pix_fmt", "yuv420p"] + list(audio or ["-an"]) + list(extra) + [out]
        self.ffmpeg(*args)
        os.chmod(out, 0o644)
        return out

    def ffprobe(self, path):
        out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_format",
                              "-show_streams", path], check=True, stdout=subprocess.PIPE)
        return json.loads(out.stdout)

    def assert_decodes(self, path):
        """ffmpeg reads every packet of path and decodes it without a word."""
        r = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-f", "null", "-"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual((r.returncode, r.stderr.decode()), (0, ""),
                         "ffmpeg decodes %s cleanly" % path)

    def kiln(self, task, inp=None, out=None, kwargs=None, settings=None, opts=(), batch=None):
        args = ["run", self.video]
        args += ["--batch", "-"] if batch is not None else [task]
        args += ["--root", self.tmp]
        if inp:
            args += ["--file", "input=" + inp]
        if out:
            args += ["--out", "output=" + out]
        if kwargs is not None:
            args += ["--kwargs", json.dumps(kwargs)]
        if settings is not None:
            args += ["--settings", json.dumps(settings)]
        stdin = None
        if batch is not None:
            stdin = "".join(json.dumps(line) + "\n" for line in batch)
        r = kilntest.run_kiln(args + list(opts), stdin=stdin)
        sys.stderr.write("%s\n" % r)
        self.assertEqual(r.leftovers, [], "processes left behind\n%s" % r)
        return r

    def assert_result(self, r):
        self.assertEqual(r.rc, 0, "the task succeeded\n%s" % r)
        return json.loads(r.stdout)

    def assert_failed(self, r, task, exc_type, pattern):
        self.assertEqual(r.rc, 1, "a failed task exits 1\n%s" % r)
        m = re.search(r"^kiln: %s failed: (\w+): (.*)$" % re.escape(task), r.stderr, re.M)
        self.assertIsNotNone(m, "stderr: kiln: TASK failed: EXC_TYPE: MESSAGE\n%s" % r)
        self.assertEqual(m.group(1), exc_type, "exc_type\n%s" % r)
        self.assertRegex(m.group(2), "^%s: " % re.escape(task), "the message names the task")
        self.assertRegex(m.group(2), pattern, "exc_message\n%s" % r)
        return m.group(2)

    def batch_lines(self, r, n):
        lines = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual(len(lines), n, "one line per task\n%s" % r)
        return lines

    def assert_line_failed(self, line, exc_type, pattern):
        self.assertEqual(line.get("status"), "FAILURE", line)
        self.assertEqual(line.get("exc_type"), exc_type, line)
        self.assertRegex(line.get("exc_message", ""), pattern, line)

    def mp4_boxes(self, path):
        """[(type, offset, size)] of an MP4's top-level boxes."""
        boxes, off = [], 0
        with open(path, "rb") as f:
            data = f.read()
        while off + 8 <= len(data):
            size = int.from_bytes(data[off:off + 4], "big")
            kind = data[off + 4:off + 8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(data[off + 8:off + 16], "big")
            boxes.append((kind, off, size))
            if size < 8:
                break
            off += size
        return boxes

    def sparse_4g(self, name, head):
        """A 4 GiB sparse file: the bytes `head`, then zeros."""
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(head)
            f.truncate(4 * GIB)
        os.chmod(p, 0o644)
        self.addCleanup(lambda: os.path.exists(p) and os.unlink(p))
        return p

    # --- video.probe ---------------------------------------------------------

    def test_probe(self):
        src = self.source("in.mp4")
        mkv = self.source("in.mkv", seconds=2, size="192x108",
                          audio=("-c:a", "pcm_s16le", "-ac", "2"))
        for path in (src, mkv):
            res = self.assert_result(self.kiln("video.probe", inp=path))
            want = self.ffprobe(path)
            fmt = want["format"]
            self.assertEqual(res["format"], fmt["format_name"])
            self.assertAlmostEqual(res["duration"], float(fmt["duration"]), places=3)
            self.assertEqual(res["size"], int(fmt["size"]))
            self.assertEqual(res["size"], os.path.getsize(path))
            self.assertEqual(res["bit_rate"], int(fmt["bit_rate"]))
            self.assertEqual(len(res["streams"]), len(want["streams"]))
            self.assertEqual((res["video_stream"], res["audio_stream"]), (0, 1))
            for got, ws in zip(res["streams"], want["streams"]):
                self.assertEqual(got["index"], ws["index"])
                self.assertEqual(got["type"], ws["codec_type"])
                self.assertEqual(got["codec"], ws["codec_name"])
                if "duration" in ws:
                    self.assertAlmostEqual(got["duration"], float(ws["duration"]), places=3)
                else:
                    self.assertNotIn("duration", got, "absent when the file does not say")
                if "nb_frames" in ws:
                    self.assertEqual(got["frames"], int(ws["nb_frames"]))
                if ws["codec_type"] == "video":
                    self.assertEqual((got["width"], got["height"]), (ws["width"], ws["height"]))
                    self.assertEqual(got["pix_fmt"], ws["pix_fmt"])
                    num, den = ws["avg_frame_rate"].split("/")
                    self.assertAlmostEqual(got["frame_rate"], int(num) / int(den), places=6)
                else:
                    self.assertEqual(got["sample_rate"], int(ws["sample_rate"]))
                    self.assertEqual(got["channels"], ws["channels"])
                    self.assertEqual(got["sample_fmt"], ws["sample_fmt"])
        self.assertEqual([s["codec"] for s in res["streams"]], ["h264", "pcm_s16le"])

    # --- video.thumbnail -----------------------------------------------------

    def test_thumbnail_jpeg(self):
        src = self.source()
        out = self.path("thumb.jpg")
        res = self.assert_result(self.kiln("video.thumbnail", inp=src, out=out,
                                           kwargs={"at": 1.2}))
        self.assertEqual(res, {"width": 320, "height": 240, "format": "jpeg", "at": 1.2,
                               "bytes": os.path.getsize(out)})
        ident = subprocess.run(["identify", "-format", "%m %w %h", out], check=True,
                               stdout=subprocess.PIPE).stdout.decode()
        self.assertEqual(ident, "JPEG 320 240")
        s = self.ffprobe(out)["streams"][0]
        self.assertEqual((s["codec_name"], s["width"], s["height"]), ("mjpeg", 320, 240))

    def test_thumbnail_png(self):
        """PNG is lossless: the frame must be exactly the one `ffmpeg -ss AT`
        picks (infinite PSNR), and differ from its neighbours; the format
        comes from the output's extension, the height from the aspect."""
        src = self.source()
        out = self.path("thumb.png")
        res = self.assert_result(self.kiln("video.thumbnail", inp=src, out=out,
                                           kwargs={"at": 1.0, "outputs": {"output": out}}))
        self.assertEqual(res, {"width": 320, "height": 240, "format": "png", "at": 1.0,
                               "bytes": os.path.getsize(out)})

        def psnr(a, b):
            r = subprocess.run(["compare", "-metric", "PSNR", a, b, "null:"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            v = r.stderr.decode().split()[0]
            return math.inf if v == "inf" else float(v)

        for at in ("0.96", "1.0", "1.04"):
            self.ffmpeg("-ss", at, "-i", src, "-frames:v", "1", self.path("ref%s.png" % at))
        self.assertEqual(psnr(out, self.path("ref1.0.png")), math.inf, "the same frame")
        self.assertLess(psnr(out, self.path("ref0.96.png")), 30, "not the frame before")
        self.assertLess(psnr(out, self.path("ref1.04.png")), 30, "not the frame after")

        small = self.path("small.png")
        res = self.assert_result(self.kiln("video.thumbnail", inp=src, out=small,
                                           kwargs={"at": 2.5, "width": 100, "format": "png"}))
        self.assertEqual(res, {"width": 100, "height": 75, "format": "png", "at": 2.52,
                               "bytes": os.path.getsize(small)})
        ident = subprocess.run(["identify", "-format", "%m %w %h", small], check=True,
                               stdout=subprocess.PIPE).stdout.decode()
        self.assertEqual(ident, "PNG 100 75")

    def test_rotation(self):
        """A phone-style rotation flag: probe reports it as ffprobe does, the
        thumbnail is turned upright exactly as `ffmpeg -ss` turns it, the
        transcode keeps the flag (frames as stored, players turn them)."""
        plain = self.source()
        src = self.path("rot.mp4")
        self.ffmpeg("-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", src)
        os.chmod(src, 0o644)
        want = self.ffprobe(src)["streams"][0]["side_data_list"][0]["rotation"]
        res = self.assert_result(self.kiln("video.probe", inp=src))
        self.assertEqual(res["streams"][0]["rotation"], want)
        self.assertEqual((res["streams"][0]["width"], res["streams"][0]["height"]), (320, 240))

        out, ref = self.path("rot.png"), self.path("ref.png")
        res = self.assert_result(self.kiln("video.thumbnail", inp=src, out=out,
                                           kwargs={"at": 1, "format": "png"}))
        self.assertEqual((res["width"], res["height"]), (240, 320))
        self.ffmpeg("-ss", "1", "-i", src, "-frames:v", "1", ref)
        r = subprocess.run(["compare", "-metric", "PSNR", out, ref, "null:"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(r.stderr.decode().split()[0], "inf", "the same upright picture")
        res = self.assert_result(self.kiln("video.thumbnail", inp=src, out=self.path("r.jpg"),
                                           kwargs={"at": 1, "width": 120}))
        self.assertEqual((res["width"], res["height"], res["format"]), (120, 160, "jpeg"))

        mp4 = self.path("rot-out.mp4")
        self.assert_result(self.kiln("video.transcode", inp=src, out=mp4, kwargs={"height": 120}))
        v = self.ffprobe(mp4)["streams"][0]
        self.assertEqual((v["width"], v["height"]), (160, 120))
        self.assertEqual(v["side_data_list"][0]["rotation"], want)

    def test_thumbnail_at_end_and_beyond(self):
        src = self.source()
        out = self.path("t.jpg")
        res = self.assert_result(self.kiln("video.thumbnail", inp=src, out=out,
                                           kwargs={"at": 3.0}))
        self.assertEqual(res["at"], 2.96, "at the very end: the last frame")
        r = self.kiln("video.thumbnail", inp=src, out=out, kwargs={"at": 7.5})
        self.assert_failed(r, "video.thumbnail", "ValueError",
                           r"at 7\.5 s is beyond the end of input \(3\.000 s\)$")

    def test_bad_arguments(self):
        src = self.source()
        out = self.path("t.jpg")
        tasks = [
            ("video.thumbnail", {"format": "gif"}, r'format "gif" is not jpeg or png'),
            ("video.thumbnail", {"width": 0}, r"width is 0; it must be from 1 to 8192"),
            ("video.thumbnail", {"at": "soon"}, r"at must be a number, not a string"),
            ("video.thumbnail", {"at": -1}, r"at is -1; it must be from 0 to"),
            ("video.thumbnail", {"outputs": {"output": "/x/t.webp"}},
             r'cannot tell the format from the output\'s extension "\.webp"'),
            ("video.thumbnail", {"colour": "red"}, r'unknown argument "colour"'),
            ("video.transcode", {"height": 241}, r"height 241 is odd"),
            ("video.transcode", {"height": 8}, r"height is 8; it must be from 16 to 8192"),
            ("video.transcode", {"crf": 60}, r"crf is 60; it must be from 0 to 51"),
            ("video.transcode", {"preset": "warp"}, r'preset "warp" is not an x264 preset'),
            ("video.transcode", {"audio": "yes"}, r"audio must be true or false, not a string"),
            ("video.probe", {"at": 1}, r'unknown argument "at"'),
        ]
        batch = [{"task": t, "kwargs": kw} for t, kw, _ in tasks]
        batch.append({"task": "video.thumbnail", "kwargs": {"at": 0.5}})
        r = self.kiln(None, inp=src, out=out, batch=batch)
        lines = self.batch_lines(r, len(batch))
        for (task, _, pattern), line in zip(tasks, lines):
            self.assert_line_failed(line, "ValueError", "^%s: %s" % (re.escape(task), pattern))
        self.assertEqual(lines[-1]["status"], "SUCCESS", "the next task runs: %r" % lines[-1])

        r = self.kiln("video.thumbnail", inp=src)
        self.assert_failed(r, "video.thumbnail", "ValueError",
                           r"no output file: name it in kwargs outputs\.output")
        r = self.kiln("video.transcode", out=out)
        self.assert_failed(r, "video.transcode", "ValueError",
                           r"no input file: name it in kwargs files\.input")

    # --- video.transcode -----------------------------------------------------

    def test_transcode(self):
        src = self.source()
        out = self.path("out.mp4")
        res = self.assert_result(self.kiln("video.transcode", inp=src, out=out,
                                           kwargs={"height": 120}))
        info = self.ffprobe(out)
        v, a = info["streams"]
        self.assertIn("mp4", info["format"]["format_name"].split(","))
        self.assertEqual((v["codec_name"], v["width"], v["height"], v["pix_fmt"]),
                         ("h264", 160, 120, "yuv420p"))
        self.assertEqual(int(v["nb_frames"]), 75)
        self.assertEqual(a["codec_name"], "aac")
        self.assertLessEqual(abs(float(info["format"]["duration"]) - 3.0), 2 * FRAME)
        self.assertLessEqual(abs(float(v["duration"]) - 3.0), 2 * FRAME)
        self.assertEqual(res, {"width": 160, "height": 120, "duration": res["duration"],
                               "frames": 75, "bytes": os.path.getsize(out),
                               "video_codec": "h264", "audio_codec": "aac", "audio": "copied"})
        self.assertLessEqual(abs(res["duration"] - float(info["format"]["duration"])), 2 * FRAME)
        self.assert_decodes(out)

    def test_transcode_audio(self):
        """Audio that is not AAC is encoded to AAC; audio false drops it."""
        src = self.source("in.mov", audio=("-c:a", "pcm_s16le", "-ac", "2", "-ar", "48000"))
        out = self.path("out.mp4")
        res = self.assert_result(self.kiln("video.transcode", inp=src, out=out,
                                           kwargs={"height": 240, "crf": 30,
                                                   "preset": "ultrafast"}))
        self.assertEqual((res["audio_codec"], res["audio"]), ("aac", "encoded"))
        v, a = self.ffprobe(out)["streams"]
        self.assertEqual((v["codec_name"], v["width"], v["height"]), ("h264", 320, 240))
        self.assertEqual((a["codec_name"], a["sample_rate"], a["channels"]), ("aac", "48000", 2))
        self.assertLessEqual(abs(float(a["duration"]) - 3.0), 0.05)
        self.assert_decodes(out)

        res = self.assert_result(self.kiln("video.transcode", inp=src, out=out,
                                           kwargs={"audio": False}))
        self.assertEqual((res["width"], res["height"], res["audio_codec"], res["audio"]),
                         (320, 240, None, "none"))
        self.assertEqual([s["codec_type"] for s in self.ffprobe(out)["streams"]], ["video"])

    def test_soft_time_limit(self):
        """With a soft limit of 1 s the transcode stops, flushes x264, writes
        the trailer: SoftTimeLimitExceeded, and a valid, shorter MP4."""
        src = self.source("long.mp4", seconds=20, size="640x360")
        out = self.path("partial.mp4")
        r = self.kiln("video.transcode", inp=src, out=out,
                      kwargs={"height": 360, "preset": "veryslow"},
                      opts=["--soft-time-limit", "1"])
        msg = self.assert_failed(r, "video.transcode", "SoftTimeLimitExceeded",
                                 r"stopped at (\d+\.\d) s of 20\.0 s: soft time limit; the output "
                                 r"is a valid MP4 of the first (\d+\.\d) s \((\d+) frames\)$")
        m = re.search(r"stopped at (\d+\.\d) s .* first (\d+\.\d) s \((\d+) frames\)", msg)
        at, kept, frames = float(m.group(1)), float(m.group(2)), int(m.group(3))
        self.assertGreater(frames, 0)
        self.assertLess(at, 20.0)
        info = self.ffprobe(out)
        v = info["streams"][0]
        self.assertIn("mp4", info["format"]["format_name"].split(","))
        self.assertEqual((v["codec_name"], v["width"], v["height"]), ("h264", 640, 360))
        self.assertEqual(int(v["nb_frames"]), frames)
        self.assertLessEqual(abs(float(info["format"]["duration"]) - kept), 0.1)
        self.assert_decodes(out)

    def test_progress_worker(self):
        """Through kiln worker and the Celery client: PROGRESS states carry
        the fraction of the duration done, at most a few a second."""
        src = self.source("in10.mp4", seconds=10, size="640x360")
        out = self.path("out.mp4")
        srv = self.redis()
        metas = []
        ps = srv.client().pubsub(ignore_subscribe_messages=True)
        ps.psubscribe("celery-task-meta-*")
        stop = threading.Event()

        def listen():
            while not stop.is_set():
                m = ps.get_message(timeout=0.1)
                if m and m["type"] == "pmessage":
                    metas.append(json.loads(m["data"]))
        t = threading.Thread(target=listen, daemon=True)
        t.start()
        self.threads.append(lambda: (stop.set(), t.join(2), ps.close()))
        wait_until(lambda: srv.client().pubsub_numpat() >= 1, 5, "the result subscriber")
        self.worker(srv, self.plugin_dir("video"), config={"roots": [self.tmp]})
        app = self.celery(srv)
        started = time.monotonic()
        r = app.send_task("video.transcode", kwargs={
            "files": {"input": src}, "outputs": {"output": out}, "height": 360,
            "preset": "medium"})
        res = r.get(timeout=90)
        took = time.monotonic() - started
        self.assertEqual((res["width"], res["height"], res["frames"]), (640, 360, 250))
        wait_until(lambda: any(m["status"] == "SUCCESS" for m in metas), 5, "the SUCCESS publish")
        progress = [m["result"] for m in metas if m["task_id"] == r.id and
                    m["status"] == "PROGRESS"]
        log("took %.1f s; progress: %r", took, progress)
        self.assertEqual(progress[-1], {"fraction": 1.0, "message": "done"})
        middle = progress[:-1]
        self.assertGreater(len(middle), 0, "progress while it ran")
        for p in middle:
            self.assertGreater(p["fraction"], 0)
            self.assertLess(p["fraction"], 1)
            m = re.fullmatch(r"(\d+\.\d) s of 10\.0 s", p["message"])
            self.assertIsNotNone(m, p)
            self.assertAlmostEqual(float(m.group(1)) / 10.0, p["fraction"], delta=0.01)
        fractions = [p["fraction"] for p in middle]
        self.assertEqual(fractions, sorted(fractions), "progress only grows")
        self.assertLessEqual(len(middle), took / 0.25 + 2, "at most 4 reports a second")

    # --- limits (settings) ---------------------------------------------------

    def test_limit_max_duration(self):
        src = self.source()
        out = self.path("o.mp4")
        batch = [{"task": "video.thumbnail"}, {"task": "video.transcode"},
                 {"task": "video.probe"}]
        r = self.kiln(None, inp=src, out=out, batch=batch, settings={"max_duration": 2.5})
        lines = self.batch_lines(r, 3)
        for task, line in zip(("video.thumbnail", "video.transcode"), lines):
            self.assert_line_failed(line, "LimitExceeded",
                                    r"^%s: input lasts 3\.0 s, above max_duration 2\.5 s$"
                                    % re.escape(task))
        self.assertEqual(lines[2]["status"], "SUCCESS", "probe only describes: %r" % lines[2])
        self.assertAlmostEqual(lines[2]["result"]["duration"], 3.0, places=2)

    def test_limit_max_width(self):
        src = self.source()
        out = self.path("o.mp4")
        batch = [{"task": "video.thumbnail"}, {"task": "video.transcode"}]
        r = self.kiln(None, inp=src, out=out, batch=batch, settings={"max_width": 300})
        for task, line in zip(("video.thumbnail", "video.transcode"), self.batch_lines(r, 2)):
            self.assert_line_failed(line, "LimitExceeded",
                                    r"^%s: input is 320x240 pixels, wider than max_width 300$"
                                    % re.escape(task))
        r = self.kiln(None, inp=src, out=out, batch=batch, settings={"max_pixels": 320 * 239})
        for line in self.batch_lines(r, 2):
            self.assert_line_failed(line, "LimitExceeded",
                                    r"input is 320x240 pixels, 76800 per frame, above "
                                    r"max_pixels 76480$")

    def test_limit_max_output_pixels(self):
        """The transcode's output size is bounded on its own (x264's memory
        grows with it): the default height (the input's) and an explicit one."""
        src = self.source()
        out = self.path("o.mp4")
        r = self.kiln("video.transcode", inp=src, out=out, settings={"max_output_pixels": 40000})
        self.assert_failed(r, "video.transcode", "LimitExceeded",
                           r"height 240 \(the input's\) makes the output 320x240, 76800 pixels, "
                           r"above max_output_pixels 40000$")
        r = self.kiln("video.transcode", inp=src, out=out, kwargs={"height": 480})
        self.assert_result(r)
        r = self.kiln("video.transcode", inp=src, out=out, kwargs={"height": 1440})
        self.assert_failed(r, "video.transcode", "LimitExceeded",
                           r"height 1440 makes the output 1920x1440, 2764800 pixels, above "
                           r"max_output_pixels 2073600$")

    def test_limit_max_frames(self):
        src = self.source()
        out = self.path("o.mp4")
        r = self.kiln("video.transcode", inp=src, out=out, settings={"max_frames": 10})
        self.assert_failed(r, "video.transcode", "LimitExceeded",
                           r"input: more than max_frames 10 video frames decoded$")

    def test_bad_settings(self):
        src = self.source()
        for settings, pattern in (
                ({"max_width": "wide"}, r"settings\.max_width must be an integer, not a string"),
                ({"max_duration": 0}, r"settings\.max_duration is 0; it must be above 0"),
                ({"probe_size": 8}, r"settings\.probe_size is 8; it must be at least 32"),
                ({"max_widht": 100}, r'unknown setting "max_widht" \(known: max_duration, ')):
            r = self.kiln("video.probe", inp=src, settings=settings)
            # init fails in every child: the task fails (exit 1), or, should
            # the runtime check init before running tasks, the plugin is
            # refused (exit 3); either way with init's ValueError.
            self.assertIn(r.rc, (1, 3), "no task ran\n%s" % r)
            self.assertEqual(r.stdout, "", "no result\n%s" % r)
            self.assertRegex(r.stderr, r"(?m)^kiln: (plugin .* refused|video\.probe failed): "
                             r"ValueError: (plugin video init failed: )?video: " + pattern)

    # --- broken and hostile inputs -----------------------------------------------

    def test_zero_byte(self):
        empty = self.path("empty.mp4")
        open(empty, "w").close()
        os.chmod(empty, 0o644)
        batch = [{"task": t} for t in ("video.probe", "video.thumbnail", "video.transcode")]
        r = self.kiln(None, inp=empty, out=self.path("o.mp4"), batch=batch)
        for b, line in zip(batch, self.batch_lines(r, 3)):
            self.assert_line_failed(line, "VideoError",
                                    r"^%s: input is empty \(0 bytes\)$" % re.escape(b["task"]))

    def test_text_named_mp4(self):
        text = self.path("notes.mp4")
        with open(text, "w") as f:
            f.write("These are meeting notes, not a video.\n" * 20)
        os.chmod(text, 0o644)
        batch = [{"task": t} for t in ("video.probe", "video.thumbnail", "video.transcode")]
        r = self.kiln(None, inp=text, out=self.path("o.mp4"), batch=batch)
        for line in self.batch_lines(r, 3):
            self.assert_line_failed(line, "VideoError",
                                    r"input is not a media file FFmpeg recognises: Invalid data "
                                    r"found when processing input$")

    def test_not_video(self):
        """Media that is not video: an MP3 (a container this plugin reads,
        without a video stream) and a PNG (a format it does not read)."""
        mp3, png = self.path("tone.mp3"), self.path("red.mp4")
        self.ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "1", mp3)
        subprocess.run(["convert", "-size", "64x64", "xc:red", "png:" + png], check=True)
        for p in (mp3, png):
            os.chmod(p, 0o644)
        r = self.kiln("video.thumbnail", inp=mp3, out=self.path("o.jpg"))
        self.assert_failed(r, "video.thumbnail", "VideoError",
                           r"input has no video stream \(audio mp3\)$")
        res = self.assert_result(self.kiln("video.probe", inp=mp3))
        self.assertEqual([s["type"] for s in res["streams"]], ["audio"])
        self.assertNotIn("video_stream", res)
        r = self.kiln("video.transcode", inp=png, out=self.path("o.mp4"))
        self.assert_failed(r, "video.transcode", "VideoError",
                           r"input looks like png_pipe \(piped png sequence\), not a video "
                           r"container this plugin reads$")

    def test_truncated_mp4(self):
        """The first half of an MP4: with the index (moov) at the end it is
        missing ("moov atom not found"); with it in front, the samples it
        points to are: the file is cut, and the task says where."""
        src = self.source()
        fast = self.path("fast.mp4")
        self.ffmpeg("-i", src, "-c", "copy", "-movflags", "+faststart", fast)
        cut_end, cut_front = self.path("cut-end.mp4"), self.path("cut-front.mp4")
        for whole, cut in ((src, cut_end), (fast, cut_front)):
            with open(whole, "rb") as f:
                data = f.read()
            with open(cut, "wb") as f:
                f.write(data[:len(data) // 2])
            os.chmod(cut, 0o644)
        batch = [{"task": "video.thumbnail"}, {"task": "video.transcode"}]
        r = self.kiln(None, inp=cut_end, out=self.path("o.mp4"), batch=batch)
        for line in self.batch_lines(r, 2):
            self.assert_line_failed(line, "VideoError",
                                    r"input cannot be read as mov,mp4,m4a,3gp,3g2,mj2: Invalid "
                                    r"data found when processing input \(mov,mp4,m4a,3gp,3g2,mj2: "
                                    r"moov atom not found\)$")
        batch = [{"task": "video.transcode"}, {"task": "video.thumbnail", "kwargs": {"at": 2}},
                 {"task": "video.thumbnail", "kwargs": {"at": 0.2}}]
        r = self.kiln(None, inp=cut_front, out=self.path("o.jpg"), batch=batch)
        lines = self.batch_lines(r, 3)
        for line in lines[:2]:
            self.assert_line_failed(line, "VideoError",
                                    r"input is truncated: its video ends at 1\.\d\d s, its "
                                    r"header says 3\.00 s$")
        self.assertEqual(lines[2]["status"], "SUCCESS", "a frame before the cut: %r" % lines[2])

    def test_sparse_4g_no_index(self):
        """4 GiB: an MP4's first 64 KiB (ftyp and the start of mdat; the
        moov is at the end, beyond them), then zeros.  A clear VideoError,
        well within the time limit and the memory cap."""
        src = self.source()
        boxes = self.mp4_boxes(src)
        self.assertEqual([b[0] for b in boxes][-1], "moov", boxes)
        with open(src, "rb") as f:
            head = f.read(64 * 1024)
        big = self.sparse_4g("big.mp4", head)
        batch = [{"task": t} for t in ("video.probe", "video.thumbnail", "video.transcode")]
        r = self.kiln(None, inp=big, out=self.path("o.mp4"), batch=batch,
                      opts=["--time-limit", "30"])
        for line in self.batch_lines(r, 3):
            self.assert_line_failed(line, "VideoError", r"\(mov,mp4,m4a,3gp,3g2,mj2: moov atom "
                                    r"not found\)$")
        rss = kilntest.max_child_rss()
        log("max RSS of any descendant: %.1f MiB", rss / MIB)
        self.assertLess(rss, CAP, "no child came near its 1 GiB cap")

    def test_sparse_4g_index_then_zeros(self):
        """4 GiB: a fast-start MP4's ftyp and moov (a valid index of 75
        frames), then zeros where the samples should be.  Every packet fails
        to decode: a VideoError quoting FFmpeg, within the cap."""
        src = self.source()
        fast = self.path("fast.mp4")
        self.ffmpeg("-i", src, "-c", "copy", "-movflags", "+faststart", fast)
        boxes = self.mp4_boxes(fast)
        self.assertEqual([b[0] for b in boxes][:2], ["ftyp", "moov"], boxes)
        end = boxes[1][1] + boxes[1][2]
        with open(fast, "rb") as f:
            head = f.read(end + 8)  # ftyp, moov and mdat's header
        big = self.sparse_4g("big.mp4", head)
        batch = [{"task": "video.thumbnail", "kwargs": {"at": 1}}, {"task": "video.transcode"},
                 {"task": "video.probe"}]
        r = self.kiln(None, inp=big, out=self.path("o.mp4"), batch=batch,
                      opts=["--time-limit", "30"])
        lines = self.batch_lines(r, 3)
        for line in lines[:2]:
            self.assert_line_failed(line, "VideoError",
                                    r"input: its h264 video cannot be decoded \(50 failures in a "
                                    r"row after 0 frames\): Invalid data found when processing "
                                    r"input")
        self.assertEqual(lines[2]["status"], "SUCCESS", "the index itself is fine: %r" % lines[2])
        self.assertEqual(lines[2]["result"]["size"], 4 * GIB)
        rss = kilntest.max_child_rss()
        log("max RSS of any descendant: %.1f MiB", rss / MIB)
        self.assertLess(rss, CAP, "no child came near its 1 GiB cap")

    def test_sparse_4g_huge_sample(self):
        """4 GiB: a fast-start MP4 whose index says its first frame holds
        768 MiB, then zeros.  Refused from the index, before anything reads
        (and allocates) the sample: a VideoError naming the sample."""
        src = self.source()
        fast = self.path("fast.mp4")
        self.ffmpeg("-i", src, "-c", "copy", "-movflags", "+faststart", fast)
        with open(fast, "rb") as f:
            data = bytearray(f.read())
        boxes = self.mp4_boxes(fast)
        end = boxes[1][1] + boxes[1][2]
        stsz = data.find(b"stsz", 0, end)  # the video track's comes first
        self.assertEqual(data[stsz + 8:stsz + 12], b"\0\0\0\0", "a table of sizes follows")
        data[stsz + 16:stsz + 20] = (768 * MIB).to_bytes(4, "big")
        big = self.sparse_4g("big.mp4", bytes(data[:end + 8]))
        batch = [{"task": t} for t in ("video.probe", "video.thumbnail", "video.transcode")]
        r = self.kiln(None, inp=big, out=self.path("o.mp4"), batch=batch,
                      opts=["--time-limit", "30"])
        for line in self.batch_lines(r, 3):
            self.assert_line_failed(line, "VideoError",
                                    r"input: its index says sample 0 of stream 0 holds "
                                    r"805306368 bytes, more than a frame of max_pixels 9437184 "
                                    r"can need \(37748736\)$")
        rss = kilntest.max_child_rss()
        log("max RSS of any descendant: %.1f MiB", rss / MIB)
        self.assertLess(rss, 256 * MIB, "the sample was never read")

    def test_bad_inputs_then_good_worker(self):
        """One child (concurrency 1, 100 tasks per child) gets broken and
        hostile inputs between good ones through kiln worker and Celery:
        each bad one fails with its VideoError, each good one after it
        succeeds; the output format follows outputs.output's extension."""
        src = self.source()
        fast = self.path("fast.mp4")
        self.ffmpeg("-i", src, "-c", "copy", "-movflags", "+faststart", fast)
        empty = self.path("empty.mp4")
        open(empty, "w").close()
        text = self.path("text.mp4")
        with open(text, "w") as f:
            f.write("not a video\n" * 50)
        half = self.path("half.mp4")
        with open(src, "rb") as f:
            data = f.read()
        with open(half, "wb") as f:
            f.write(data[:len(data) // 2])
        boxes = self.mp4_boxes(fast)
        with open(fast, "rb") as f:
            head = f.read(boxes[1][1] + boxes[1][2] + 8)
        big = self.sparse_4g("big.mp4", head)
        for p in (empty, text, half):
            os.chmod(p, 0o644)
        srv = self.redis()
        self.worker(srv, self.plugin_dir("video"), config={
            "roots": [self.tmp],
            "pools": {"video": {"concurrency": 1, "max_tasks_per_child": 100}}})
        app = self.celery(srv)
        plan = [(src, None), (empty, r"input \".*/empty\.mp4\" is empty \(0 bytes\)$"),
                (src, None), (text, r"is not a media file FFmpeg recognises"),
                (src, None), (half, r"moov atom not found\)$"),
                (src, None), (big, r"its h264 video cannot be decoded"), (src, None)]
        sent = []
        for i, (inp, _) in enumerate(plan):
            out = self.path("thumb%d.%s" % (i, "png" if i % 4 == 0 else "jpg"))
            sent.append((out, app.send_task("video.thumbnail", kwargs={
                "files": {"input": inp}, "outputs": {"output": out}, "at": 1})))
        for (inp, pattern), (out, r) in zip(plan, sent):
            if pattern is None:
                res = r.get(timeout=60)
                fmt = "png" if out.endswith(".png") else "jpeg"
                self.assertEqual(res, {"width": 320, "height": 240, "format": fmt, "at": 1.0,
                                       "bytes": os.path.getsize(out)})
            else:
                r.get(timeout=60, propagate=False)
                self.assertEqual(r.state, "FAILURE")
                self.assertEqual(type(r.result).__name__, "VideoError", repr(r.result))
                self.assertRegex(str(r.result), "^video.thumbnail: " + "input \"%s\"" %
                                 re.escape(inp))
                self.assertRegex(str(r.result), pattern)


if __name__ == "__main__":
    main()
