#!/usr/bin/python3
"""The FastAPI example (examples/fastapi) end to end (issue 4 part 6).

Each test starts a private redis-server on a unix socket, uvicorn serving
examples/fastapi/app.py on a free 127.0.0.1 port, and (where it needs one)
`kiln worker` with build/plugins/image.so and examples/fastapi/kiln.json
(roots and plugins pointed at the test's own directories), then talks to the
app over HTTP with httpx like any client would.  Test images are made here by
ImageMagick; the decompression bomb is a PNG written by hand (a valid IHDR
claiming 100000x100000 pixels, a one-row IDAT).  Everything is stopped at the
end and nothing may be left running.

Environment: KILN_BIN, KILN_PLUGINS (build/plugins with image.so).
Usage: test_fastapi.py [FastapiTest.test_NAME ...]
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import unittest
import uuid
import zlib

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
APP_DIR = os.path.join(SOURCE_ROOT, "examples", "fastapi")
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration", "worker"))
from harness import Proc, WorkerTestCase, free_port, log, main, wait_until  # noqa: E402
import kilntest  # noqa: E402  (tests/hostile, put on sys.path by harness)

try:
    import fastapi  # noqa: F401  (imported only to skip early; uvicorn imports it)
    import httpx
    import uvicorn  # noqa: F401
    MISSING = None
except ImportError as e:  # the quickstart installs them; say which is missing
    MISSING = "python3-fastapi, uvicorn and python3-httpx are needed: %s" % e

STATUS_KEYS = {"state", "progress", "result", "error", "output"}
TASK_TIMEOUT = 20  # seconds a thumbnail may take, queued to SUCCESS


def magick(*args):
    """Run ImageMagick (magick if it is there, else convert)."""
    tool = shutil.which("magick") or shutil.which("convert")
    if tool is None:
        raise AssertionError("ImageMagick (magick or convert) is not installed")
    subprocess.run([tool, *args], check=True, timeout=30)


def identify(path):
    """(format, width, height) as ImageMagick's identify reads the file."""
    out = subprocess.run(["identify", "-format", "%m %w %h\\n", path], check=True,
                         capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    fmt, w, h = out.split()
    return fmt, int(w), int(h)


def png_bomb(width=100000, height=100000):
    """A PNG whose header promises width x height RGB pixels (30 GB decoded)
    and whose data is one row of zeros: small on disk, a bomb for a decoder
    that believes the header."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * width), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class FastapiTest(WorkerTestCase):

    @classmethod
    def setUpClass(cls):
        if MISSING:
            raise unittest.SkipTest(MISSING)
        super().setUpClass()

    # --- set-up ----------------------------------------------------------------

    def start(self, worker=True, env=None):
        """redis-server, uvicorn with the app, and (with worker) kiln worker."""
        self.srv = self.redis()
        self.media = os.path.join(self.tmp, "media")
        os.mkdir(self.media, 0o755)
        port = free_port()
        full = {"KILN_BROKER_URL": self.srv.url, "KILN_MEDIA_DIR": self.media,
                "PYTHONDONTWRITEBYTECODE": "1"}
        full.update(env or {})
        self.web = Proc(self, "uvicorn", [
            "/usr/bin/python3", "-m", "uvicorn", "app:app", "--app-dir", APP_DIR,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
            env=full, cwd=self.tmp)
        self.http = httpx.Client(base_url="http://127.0.0.1:%d" % port, timeout=10)
        self.addCleanup(self.http.close)
        wait_until(self._healthy, 30, lambda: "uvicorn to answer /health\n--- log\n"
                   + self.web.tail())
        self.kiln = self.start_worker() if worker else None

    def _healthy(self):
        if not self.web.alive():
            raise AssertionError("uvicorn exited with %s\n--- log\n%s"
                                 % (self.web.p.returncode, self.web.tail()))
        try:
            return self.http.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def start_worker(self):
        """kiln worker with the example's own config, pointed at this test."""
        with open(os.path.join(APP_DIR, "kiln.json")) as f:
            cfg = json.load(f)
        cfg.pop("broker", None)  # --broker: the private redis-server
        cfg["roots"] = [self.media]
        cfg["plugins"] = self.plugin_dir("image")
        cfg["pools"]["image"]["concurrency"] = 2
        return self.worker(self.srv, config=cfg, name="kiln")

    def stop_all(self):
        """SIGTERM the worker and uvicorn, which must exit cleanly, then check
        that nothing they started is still running."""
        for p in (self.kiln, self.web):
            if p is None:
                continue
            p.signal(signal.SIGTERM)
            self.assertEqual(p.wait(30), 0, "%s exit status\n--- log\n%s" % (p.name, p.tail()))
        self.assert_no_leftovers("stopping kiln and uvicorn")
        left = [d for d in kilntest.descendants() if "redis-server" not in d[3]]
        self.assertEqual(left, [], "processes still running besides redis-server")

    # --- HTTP ------------------------------------------------------------------

    def upload(self, name, data, **fields):
        """POST /images; the 202 body, checked."""
        r = self.http.post("/images", files={"file": (name, data, "application/octet-stream")},
                           data={k: str(v) for k, v in fields.items()})
        self.assertEqual(r.status_code, 202, r.text)
        body = r.json()
        self.assertEqual(set(body), {"task_id", "status_url"})
        uuid.UUID(body["task_id"])
        self.assertEqual(body["status_url"], "%s/tasks/%s" % (self.http.base_url,
                                                              body["task_id"]))
        self.assertEqual(r.headers["location"], body["status_url"])
        log("uploaded %s (%d bytes) as task %s", name, len(data), body["task_id"])
        return body

    def status(self, task):
        r = self.http.get(task["status_url"])
        self.assertEqual(r.status_code, 200, r.text)
        body = r.json()
        self.assertEqual(set(body), STATUS_KEYS, body)
        if body["state"] == "PROGRESS":
            self.assertIsInstance(body["progress"], float, body)
            self.assertTrue(0.0 <= body["progress"] <= 1.0, body)
        return body

    def wait_done(self, task, between=None):
        """Poll the status URL until SUCCESS or FAILURE; between() runs after
        every poll (e.g. a health check).  Returns the final body."""
        seen = []

        def done():
            body = self.status(task)
            if not seen or seen[-1] != body["state"]:
                seen.append(body["state"])
            if between:
                between()
            return body if body["state"] in ("SUCCESS", "FAILURE") else None
        body = wait_until(done, TASK_TIMEOUT, lambda: "task %s to finish (states %r)"
                          % (task["task_id"], seen), interval=0.05)
        log("task %s: states %r, last %s", task["task_id"], seen, json.dumps(body))
        self.assertTrue(set(seen) <= {"PENDING", "STARTED", "PROGRESS", "SUCCESS", "FAILURE"},
                        seen)
        return body

    def download(self, body, name):
        """GET the thumbnail named by a SUCCESS body into the temp dir."""
        r = self.http.get(body["output"])
        self.assertEqual(r.status_code, 200, r.text)
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(r.content)
        return r, path

    def assert_health(self):
        r = self.http.get("/health", timeout=5)
        self.assertEqual((r.status_code, r.json()), (200, {"status": "ok"}))

    def assert_failed(self, body, exc_type):
        self.assertEqual(body["state"], "FAILURE", body)
        self.assertEqual(set(body["error"]), {"type", "message"}, body)
        self.assertEqual(body["error"]["type"], exc_type, body)
        self.assertIsNone(body["result"], body)
        self.assertIsNone(body["output"], body)
        message = body["error"]["message"]
        self.assertNotIn(self.media, message, "the server's paths stay on the server")
        return message

    def make_jpeg(self, name, size):
        path = os.path.join(self.tmp, name)
        magick("-size", size, "gradient:navy-orange", "-quality", "85", path)
        with open(path, "rb") as f:
            return f.read()

    # --- tests -----------------------------------------------------------------

    def test_thumbnail(self):
        """A 1600x1200 JPEG becomes a 256x192 thumbnail.  It is uploaded
        before any worker runs: the 202 cannot have waited for the work."""
        self.start(worker=False)
        data = self.make_jpeg("photo.jpg", "1600x1200")
        task = self.upload("photo.jpg", data, width=256)
        with open(os.path.join(self.media, "in", task["task_id"] + ".jpg"), "rb") as f:
            self.assertEqual(f.read(), data, "the upload is stored whole under media/in")
        self.assertEqual(self.status(task), {"state": "PENDING", "progress": None,
                                             "result": None, "error": None, "output": None})
        name = task["task_id"] + ".jpg"
        self.assertEqual(self.http.get("/thumbnails/" + name).status_code, 404,
                         "no thumbnail before the task has run")

        self.kiln = self.start_worker()
        body = self.wait_done(task)
        self.assertEqual(body["state"], "SUCCESS", body)
        self.assertEqual(body["progress"], 1.0)
        self.assertIsNone(body["error"])
        self.assertEqual(body["output"], "%s/thumbnails/%s" % (self.http.base_url, name))
        r, path = self.download(body, "thumb.jpg")
        self.assertEqual(r.headers["content-type"], "image/jpeg")
        self.assertEqual(identify(path), ("JPEG", 256, 192))
        self.assertEqual(body["result"], {
            "width": 256, "height": 192, "format": "jpeg", "bytes": len(r.content),
            "source": {"width": 1600, "height": 1200, "format": "jpeg"}})
        self.stop_all()

    def test_decompression_bomb(self):
        """A PNG claiming 100000x100000 pixels fails cleanly with
        DecompressionBombError naming the size; the API answers throughout,
        and an image queued right after the bomb is thumbnailed."""
        self.start()
        bomb = png_bomb()
        self.assertLess(len(bomb), 2000)
        bad = self.upload("bomb.png", bomb, width=128)
        self.assert_health()
        small = os.path.join(self.tmp, "small.png")
        magick("-size", "320x240", "gradient:white-black", small)
        with open(small, "rb") as f:
            good = self.upload("small.png", f.read(), width=100, format="png")

        body = self.wait_done(bad, between=self.assert_health)
        message = self.assert_failed(body, "DecompressionBombError")
        self.assertIn('"in/%s.png"' % bad["task_id"], message, "the message names the file")
        self.assertIn("100000x100000", message)
        self.assertEqual(self.http.get("/thumbnails/%s.jpg" % bad["task_id"]).status_code, 404,
                         "a failed task's (empty) output is not served")

        body = self.wait_done(good, between=self.assert_health)
        self.assertEqual(body["state"], "SUCCESS", body)
        r, path = self.download(body, "small-thumb.png")
        self.assertEqual(r.headers["content-type"], "image/png")
        self.assertEqual(identify(path), ("PNG", 100, 75))
        self.assertEqual((body["result"]["width"], body["result"]["height"],
                          body["result"]["format"], body["result"]["source"]),
                         (100, 75, "png", {"width": 320, "height": 240, "format": "png"}))
        self.assert_health()
        self.stop_all()

    def test_broken_upload(self):
        """Text named .jpg fails with ImageError; an empty file is refused by
        the API itself (422) and never queued."""
        self.start()
        task = self.upload("notes.jpg", b"these are not the pixels you are looking for\n" * 20)
        body = self.wait_done(task)
        message = self.assert_failed(body, "ImageError")
        self.assertIn('"in/%s.jpg"' % task["task_id"], message, "the message names the file")

        r = self.http.post("/images", files={"file": ("empty.jpg", b"")})
        self.assertEqual(r.status_code, 422, r.text)
        self.assertEqual(r.json(), {"detail": 'the uploaded file "empty.jpg" is empty'})
        self.assertEqual(os.listdir(os.path.join(self.media, "in")),
                         [task["task_id"] + ".jpg"], "nothing stored for the refused upload")
        self.stop_all()

    def test_api_errors(self):
        """What the API refuses itself, with no worker running: oversized
        uploads (413), bad form fields (422), not multipart (415), paths that
        try to leave the thumbnail directory (404), a broker that is down (503);
        none of them leaves a file behind."""
        self.start(worker=False, env={"KILN_MAX_UPLOAD": "64K"})
        inbox = os.path.join(self.media, "in")
        jpeg = self.make_jpeg("tiny.jpg", "64x48")

        def post(fields=None, files=None, **kw):
            return self.http.post("/images", data=fields, files=files, **kw)

        r = post(files={"file": ("big.jpg", os.urandom(100 * 1024))})
        self.assertEqual((r.status_code, r.json()),
                         (413, {"detail": "upload is larger than 65536 bytes"}))
        cases = [
            ({"width": "0"}, 'width "0" is not an integer in 1..4096'),
            ({"width": "wide"}, 'width "wide" is not an integer in 1..4096'),
            ({"width": "100", "height": "5000"}, 'height "5000" is not an integer in 1..4096'),
            ({"format": "gif"}, 'format "gif" is not one of jpeg, png, webp'),
        ]
        for fields, detail in cases:
            r = post(fields, files={"file": ("tiny.jpg", jpeg)})
            self.assertEqual((r.status_code, r.json()), (422, {"detail": detail}), fields)
        r = post({"width": "100"})
        self.assertEqual(r.status_code, 415, r.text)  # no file at all: urlencoded
        r = post({"width": "100"}, files={"image": ("tiny.jpg", jpeg)})
        self.assertEqual((r.status_code, r.json()["detail"]),
                         (422, 'unexpected file field "image" (the image goes in "file")'))
        r = post(content=b"just bytes", headers={"content-type": "image/jpeg"})
        self.assertEqual(r.status_code, 415, r.text)
        self.assertEqual(os.listdir(inbox), [], "no refused upload leaves a file")

        self.assertEqual(self.http.get("/tasks/not-a-task").status_code, 404)
        unknown = str(uuid.uuid4())
        self.assertEqual(self.http.get("/tasks/" + unknown).json()["state"], "PENDING")
        secret = os.path.join(self.media, "in", "secret.jpg")
        with open(secret, "wb") as f:
            f.write(jpeg)
        with open(os.path.join(self.media, "out", unknown + ".jpg"), "wb") as f:
            f.write(jpeg)
        for path in ("/thumbnails/..%2Fin%2Fsecret.jpg", "/thumbnails/../in/secret.jpg",
                     "/thumbnails/%2e%2e%2fin%2fsecret.jpg", "/thumbnails/secret.jpg",
                     "/thumbnails/%s.jpg" % unknown, "/thumbnails/%s.gif" % unknown):
            r = self.http.get(path)
            self.assertEqual(r.status_code, 404, "%s: %s" % (path, r.text))
        os.unlink(secret)

        task = self.upload("tiny.jpg", jpeg, width=32)  # the broker is up: queued
        self.srv.stop()
        r = post(files={"file": ("tiny.jpg", jpeg)})
        self.assertEqual(r.status_code, 503, r.text)
        self.assertTrue(r.json()["detail"].startswith("broker: cannot queue image.thumbnail: "),
                        r.text)
        self.assertEqual(os.listdir(inbox), [task["task_id"] + ".jpg"],
                         "the upload that was not queued is removed")
        self.assert_health()
        self.stop_all()


if __name__ == "__main__":
    main()
