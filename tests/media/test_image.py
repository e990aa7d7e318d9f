#!/usr/bin/python3
"""The bundled image plugin (plugins/image, docs/plugins/image.md).

Inputs are made during each test by real tools in a private temp directory
(mode 0755: the sandboxed children run as unprivileged uids): ImageMagick
for JPEG, PNG, WebP, GIF and BMP files, libvips's `vips` for the
100-megapixel JPEG (ImageMagick would need ~800 MB to draw it), and a PNG
whose header claims 100000x100000 pixels is written byte by byte (IHDR with
its CRC, a tiny IDAT).  Outputs are checked with ImageMagick's `identify`.

Most tests drive `kiln run`; the worker tests send tasks with the Celery
client to `kiln worker` on a private redis-server (tests/integration/worker/
harness.py), naming the files in kwargs `files` / `outputs`.

Usage: test_image.py [ImageTest.test_NAME ...]
Environment: KILN_BIN (the kiln binary), KILN_PLUGINS (directory of image.so).
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "hostile"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration", "worker"))
import kilntest  # noqa: E402

PLUGIN = kilntest.plugin("image")
MIB = 1 << 20
CAP = 200 * MIB  # the plugin's default memory cap per child
FAILED = re.compile(r"^kiln: (\S+) failed: (\w+): (.*)$", re.M)


def tool(*names):
    """The first of names found, the distribution's binaries first."""
    for path in ("/usr/bin:/bin", None):
        for n in names:
            p = shutil.which(n, path=path)
            if p:
                return p
    raise unittest.SkipTest("none of %s is installed" % ", ".join(names))


def bomb_png(path, width, height):
    """A PNG whose IHDR claims width x height RGB pixels (correct CRC), then
    a tiny IDAT and IEND."""
    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


class Helpers:
    """Inputs, outputs and `kiln run` for both test classes (self.tmp: a
    private 0755 directory)."""

    # --- inputs and outputs --------------------------------------------------

    def path(self, name):
        return os.path.join(self.tmp, name)

    def magick(self, *args):
        subprocess.run([tool("magick", "convert")] + [str(a) for a in args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def picture(self, name, width, height):
        """A photo-like picture (plasma fractal, fixed seed) of width x height."""
        p = self.path(name)
        self.magick("-seed", "7", "-size", "%dx%d" % (width, height), "plasma:fractal", p)
        return p

    def identify(self, path):
        """(format, width, height) of an image file, as ImageMagick reads it."""
        out = subprocess.run([tool("identify"), "-format", "%m %w %h\n", path], check=True,
                             capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
        fmt, w, h = out.split()
        return fmt, int(w), int(h)

    def pixel(self, path, x, y):
        """(r, g, b) at x, y, 8 bits per channel."""
        out = subprocess.run([tool("magick", "convert"), path, "-depth", "8", "-crop",
                              "1x1+%d+%d" % (x, y), "rgb:-"], check=True, capture_output=True,
                             timeout=30).stdout
        return tuple(out[:3])

    # --- kiln run ------------------------------------------------------------

    def run_task(self, task, kwargs, inp=None, out=None, settings=None, extra=()):
        """`kiln run image.so TASK` with the files given, beneath self.tmp."""
        argv = ["run", PLUGIN, task, "--root", self.tmp, "--kwargs", json.dumps(kwargs)]
        if inp:
            argv += ["--file", "input=" + inp]
        if out:
            argv += ["--out", "output=" + out]
        if settings is not None:
            argv += ["--settings", json.dumps(settings)]
        r = kilntest.run_kiln(argv + list(extra))
        self.assertEqual(r.leftovers, [], "processes left behind\n%s" % r)
        self.assertEqual(r.cgroups, [], "cgroups left behind\n%s" % r)
        return r

    def ok(self, task, kwargs, inp, out, **kw):
        r = self.run_task(task, kwargs, inp, out, **kw)
        self.assertEqual(r.rc, 0, "%s must succeed\n%s" % (task, r))
        return json.loads(r.stdout)

    def fails(self, task, kwargs, inp, out, exc_type, *fragments, **kw):
        """The task fails with exc_type and a message holding every fragment;
        returns the message."""
        r = self.run_task(task, kwargs, inp, out, **kw)
        self.assertEqual(r.rc, 1, "%s must fail\n%s" % (task, r))
        m = FAILED.search(r.stderr)
        self.assertTrue(m, "no 'kiln: TASK failed: TYPE: MESSAGE' line\n%s" % r)
        self.assertEqual((m.group(1), m.group(2)), (task, exc_type), str(r))
        self.assertTrue(m.group(3).startswith(task + ": "), "the message names the task\n%s" % r)
        for f in fragments:
            self.assertIn(f, m.group(3), str(r))
        return m.group(3)

    def batch(self, lines, inp, out, extra=()):
        r = kilntest.run_kiln(["run", PLUGIN, "--batch", "-", "--root", self.tmp,
                               "--file", "input=" + inp, "--out", "output=" + out] + list(extra),
                              stdin="".join(json.dumps(x) + "\n" for x in lines))
        self.assertEqual(r.leftovers, [], "processes left behind\n%s" % r)
        got = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        self.assertEqual(len(got), len(lines), str(r))
        return r, got

    @staticmethod
    def result(w, h, fmt, nbytes, sw, sh, sfmt):
        return {"width": w, "height": h, "format": fmt, "bytes": nbytes,
                "source": {"width": sw, "height": sh, "format": sfmt}}


class ImageTest(Helpers, unittest.TestCase):
    """Tasks through `kiln run`."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(PLUGIN):
            raise AssertionError("image plugin not built: %s (libvips-dev missing?)" % PLUGIN)
        kilntest.become_subreaper()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kiln-image-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    # --- thumbnail -------------------------------------------------------------

    def test_thumbnail_jpeg(self):
        src = self.picture("in.jpg", 400, 300)
        dst = self.path("out.jpg")
        res = self.ok("image.thumbnail", {"width": 100}, src, dst)
        self.assertEqual(res, self.result(100, 75, "jpeg", os.path.getsize(dst), 400, 300, "jpeg"))
        self.assertEqual(self.identify(dst), ("JPEG", 100, 75))

    def test_thumbnail_box(self):
        """width x height is a box: the result fits inside, aspect kept."""
        src = self.picture("tall.png", 300, 400)
        dst = self.path("out.png")
        res = self.ok("image.thumbnail", {"width": 100, "height": 50}, src, dst)
        self.assertEqual((res["width"], res["height"], res["format"]), (38, 50, "png"))
        self.assertEqual(self.identify(dst), ("PNG", 38, 50))
        res = self.ok("image.thumbnail", {"width": 60}, src, dst)  # height defaults to width
        self.assertEqual(self.identify(dst), ("PNG", 45, 60))

    def test_thumbnail_no_enlarge(self):
        """Never larger than the source, unless enlarge: true."""
        src = self.picture("small.webp", 80, 60)
        dst = self.path("out.webp")
        res = self.ok("image.thumbnail", {"width": 200}, src, dst)
        self.assertEqual(res, self.result(80, 60, "webp", os.path.getsize(dst), 80, 60, "webp"))
        self.assertEqual(self.identify(dst), ("WEBP", 80, 60))
        self.ok("image.thumbnail", {"width": 200, "enlarge": True}, src, dst)
        self.assertEqual(self.identify(dst), ("WEBP", 200, 150))

    # --- resize ----------------------------------------------------------------

    def test_resize_contain(self):
        src = self.picture("in.jpg", 400, 300)
        dst = self.path("out.jpg")
        res = self.ok("image.resize", {"width": 100, "height": 100}, src, dst)
        self.assertEqual(res, self.result(100, 75, "jpeg", os.path.getsize(dst), 400, 300, "jpeg"))
        self.assertEqual(self.identify(dst), ("JPEG", 100, 75))
        self.ok("image.resize", {"width": 800, "height": 800, "fit": "contain"}, src, dst)
        self.assertEqual(self.identify(dst), ("JPEG", 800, 600), "resize enlarges")

    def test_resize_cover(self):
        """cover fills the box and crops the overflow around the centre:
        red | green | blue bands, 400x100, covered into 100x100 keep only
        the green middle."""
        src = self.path("bands.png")
        self.magick("-size", "100x100", "xc:red", "-size", "200x100", "xc:lime", "-size",
                    "100x100", "xc:blue", "+append", src)
        dst = self.path("out.png")
        res = self.ok("image.resize", {"width": 100, "height": 100, "fit": "cover"}, src, dst)
        self.assertEqual(res, self.result(100, 100, "png", os.path.getsize(dst), 400, 100, "png"))
        self.assertEqual(self.identify(dst), ("PNG", 100, 100))
        for x, y in ((0, 0), (99, 0), (50, 50), (0, 99), (99, 99)):
            self.assertEqual(self.pixel(dst, x, y), (0, 255, 0), "pixel %d,%d" % (x, y))

    def test_resize_fill(self):
        """fill stretches to exactly width x height: the bands keep their
        share of the width."""
        src = self.path("bands.png")
        self.magick("-size", "100x100", "xc:red", "-size", "200x100", "xc:lime", "-size",
                    "100x100", "xc:blue", "+append", src)
        dst = self.path("out.jpg")
        res = self.ok("image.resize", {"width": 40, "height": 200, "fit": "fill",
                                       "format": "jpeg", "quality": 95}, src, dst)
        self.assertEqual(res, self.result(40, 200, "jpeg", os.path.getsize(dst), 400, 100, "png"))
        self.assertEqual(self.identify(dst), ("JPEG", 40, 200))
        red, green, blue = (self.pixel(dst, x, 100) for x in (2, 20, 37))
        self.assertTrue(red[0] > 200 and red[1] < 60, red)
        self.assertTrue(green[1] > 200 and green[0] < 60, green)
        self.assertTrue(blue[2] > 200 and blue[1] < 60, blue)

    def test_resize_one_side(self):
        """With only width (or only height) the other side follows the aspect."""
        src = self.picture("in.webp", 400, 300)
        dst = self.path("out.webp")
        res = self.ok("image.resize", {"width": 200}, src, dst)
        self.assertEqual(res, self.result(200, 150, "webp", os.path.getsize(dst), 400, 300, "webp"))
        self.assertEqual(self.identify(dst), ("WEBP", 200, 150))
        self.ok("image.resize", {"height": 60, "fit": "cover"}, src, dst)
        self.assertEqual(self.identify(dst), ("WEBP", 80, 60))

    # --- convert and formats ---------------------------------------------------

    def test_convert_formats(self):
        """Every format in, every format out; the pixels' size is kept."""
        names = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
        ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}
        for fin in names:
            src = self.picture("in.%s" % ext[fin], 120, 90)
            for fout in names:
                with self.subTest(source=fin, output=fout):
                    dst = self.path("from-%s.%s" % (fin, ext[fout]))
                    res = self.ok("image.convert", {"format": fout}, src, dst)
                    self.assertEqual(res, self.result(120, 90, fout, os.path.getsize(dst),
                                                      120, 90, fin))
                    self.assertEqual(self.identify(dst), (names[fout], 120, 90))

    def test_format_from_extension(self):
        """No format: the extension of outputs.output decides (.jpg, .jpeg,
        .png, .webp, any case), else the input's format."""
        src = self.picture("in.png", 64, 48)
        for name, want in (("a.webp", "WEBP"), ("b.JPG", "JPEG"), ("c.jpeg", "JPEG"),
                           ("d.bin", "PNG"), ("e", "PNG")):
            with self.subTest(output=name):
                dst = self.path(name)
                res = self.ok("image.convert", {"outputs": {"output": dst}}, src, dst)
                self.assertEqual(res["format"], want.lower())
                self.assertEqual(self.identify(dst)[0], want)
        dst = self.path("f.png")  # format wins over the extension
        self.ok("image.convert", {"outputs": {"output": dst}, "format": "webp"}, src, dst)
        self.assertEqual(self.identify(dst)[0], "WEBP")

    def test_convert_alpha_to_jpeg(self):
        """JPEG has no alpha: transparency is laid over white."""
        src = self.path("alpha.png")
        self.magick("-size", "64x64", "xc:none", "-fill", "blue", "-draw",
                    "rectangle 16,16 47,47", src)
        dst = self.path("out.jpg")
        self.ok("image.convert", {"format": "jpeg", "quality": 95}, src, dst)
        self.assertEqual(self.identify(dst), ("JPEG", 64, 64))
        corner, centre = self.pixel(dst, 2, 2), self.pixel(dst, 32, 32)
        self.assertTrue(min(corner) >= 245, "transparent corner is white: %r" % (corner,))
        self.assertTrue(centre[2] >= 230 and centre[0] <= 25, "blue centre: %r" % (centre,))
        dst = self.path("out.webp")
        self.ok("image.convert", {"format": "webp"}, src, dst)
        out = subprocess.run([tool("identify"), "-format", "%A", dst], capture_output=True,
                             text=True, check=True).stdout
        self.assertIn(out.strip().lower(), ("true", "blend"), "WebP keeps the alpha channel")

    def test_quality(self):
        """quality 1..100 reaches the JPEG and WebP encoders."""
        src = self.picture("in.png", 200, 150)
        sizes = {}
        for q in (10, 95):
            dst = self.path("q%d.jpg" % q)
            sizes[q] = self.ok("image.convert", {"format": "jpeg", "quality": q}, src, dst)["bytes"]
            est = subprocess.run([tool("identify"), "-format", "%Q", dst], capture_output=True,
                                 text=True, check=True).stdout
            self.assertEqual(int(est), q, "ImageMagick's quality estimate of %s" % dst)
        self.assertLess(sizes[10] * 2, sizes[95])
        w10 = self.ok("image.convert", {"format": "webp", "quality": 10}, src,
                      self.path("q10.webp"))["bytes"]
        w95 = self.ok("image.convert", {"format": "webp", "quality": 95}, src,
                      self.path("q95.webp"))["bytes"]
        self.assertLess(w10 * 2, w95)

    # --- broken and hostile inputs -------------------------------------------

    def test_truncated_jpeg(self):
        """Cut in the middle of the scan: an ImageError, not grey pixels, and
        the output is left empty."""
        full = self.picture("full.jpg", 800, 600)
        src = self.path("cut.jpg")
        with open(full, "rb") as f:
            data = f.read()
        with open(src, "wb") as f:
            f.write(data[: len(data) // 2])
        dst = self.path("out.jpg")
        for task, kw in (("image.thumbnail", {"width": 100}), ("image.convert", {})):
            with self.subTest(task=task):
                kw = dict(kw, files={"input": src})
                self.fails(task, kw, src, dst, "ImageError",
                           'input "%s" is truncated or corrupt' % src, "Premature end")
                self.assertEqual(os.path.getsize(dst), 0, "no half-written output")

    def test_truncated_png(self):
        full = self.picture("full.png", 400, 300)
        src = self.path("cut.png")
        with open(full, "rb") as f:
            data = f.read()
        with open(src, "wb") as f:
            f.write(data[: len(data) // 2])
        self.fails("image.thumbnail", {"width": 50, "files": {"input": src}}, src,
                   self.path("out.png"), "ImageError",
                   'input "%s" is truncated or corrupt' % src, "libpng read error")

    def test_bomb_png(self):
        """A PNG claiming 100000x100000 pixels is refused on its header."""
        src = self.path("bomb.png")
        bomb_png(src, 100000, 100000)
        dst = self.path("out.png")
        for task in ("image.thumbnail", "image.convert"):
            with self.subTest(task=task):
                self.fails(task, {"width": 64} if task == "image.thumbnail" else {}, src, dst,
                           "DecompressionBombError",
                           "input claims 100000x100000 pixels, above max_pixels 250000000")
                self.assertEqual(os.path.getsize(dst), 0)

    def test_max_pixels_setting(self):
        """max_pixels is the operator's: a lower setting refuses a small
        image, kwargs cannot change it."""
        src = self.picture("in.jpg", 400, 300)
        dst = self.path("out.jpg")
        self.fails("image.thumbnail", {"width": 64}, src, dst, "DecompressionBombError",
                   "input claims 400x300 pixels, above max_pixels 100000",
                   settings={"max_pixels": 100000})
        self.fails("image.thumbnail", {"width": 64, "max_pixels": 10 ** 9}, src, dst,
                   "ValueError", "max_pixels is a setting of the worker", "not a task argument",
                   settings={"max_pixels": 100000})
        self.ok("image.thumbnail", {"width": 64}, src, dst, settings={"max_pixels": 120000})

    def test_input_size_limit(self):
        """max_input_bytes refuses a larger file before reading it."""
        src = self.picture("in.png", 100, 100)
        size = os.path.getsize(src)
        self.fails("image.convert", {"files": {"input": src}}, src, self.path("out.png"),
                   "ValueError", 'input "%s" is %d bytes, above max_input_bytes 1000'
                   % (src, size), settings={"max_input_bytes": 1000})

    def test_empty_file(self):
        src = self.path("empty.jpg")
        open(src, "wb").close()
        self.fails("image.thumbnail", {"width": 64, "files": {"input": src}}, src,
                   self.path("out.jpg"), "ImageError", 'input "%s" is empty (0 bytes)' % src)

    def test_text_named_jpg(self):
        src = self.path("notes.jpg")
        with open(src, "w") as f:
            f.write("hello, this is text\n")
        self.fails("image.thumbnail", {"width": 64, "files": {"input": src}}, src,
                   self.path("out.jpg"), "ImageError",
                   'input "%s" is not a JPEG, PNG or WebP image' % src,
                   'its first bytes are "hello, this "')

    def test_gif_refused(self):
        src = self.path("anim.gif")
        self.magick("-size", "32x32", "xc:red", "xc:blue", src)
        self.fails("image.convert", {"format": "png"}, src, self.path("out.png"), "ImageError",
                   "input is a GIF image, not a JPEG, PNG or WebP image")

    def test_bmp_refused(self):
        src = self.path("pic.bmp")
        self.magick("-size", "32x32", "xc:red", src)
        self.fails("image.thumbnail", {"width": 16}, src, self.path("out.png"), "ImageError",
                   "input is not a JPEG, PNG or WebP image", 'its first bytes are "BM')

    def test_bad_args_batch(self):
        """Each bad argument is a ValueError naming it; the tasks around them
        in the same pool succeed."""
        src = self.picture("in.jpg", 160, 120)
        dst = self.path("out.jpg")
        good = {"task": "image.thumbnail", "kwargs": {"width": 40}}
        bad = [
            ("image.thumbnail", {}, "width is required"),
            ("image.thumbnail", {"width": 0}, "width must be an integer above 0, got 0"),
            ("image.thumbnail", {"width": "64"}, 'width must be an integer above 0, got "64"'),
            ("image.thumbnail", {"width": 64, "height": -3},
             "height must be an integer above 0, got -3"),
            ("image.thumbnail", {"width": 64, "enlarge": "yes"}, "enlarge must be true or false"),
            ("image.thumbnail", {"width": 20000}, "width 20000 is above max_width 16384"),
            ("image.resize", {"fit": "cover"}, "width or height is required (or both)"),
            ("image.resize", {"width": 10, "fit": "stretch"},
             'fit must be "contain", "cover" or "fill", got "stretch"'),
            ("image.convert", {"format": "gif"},
             'format must be "jpeg", "png" or "webp", got "gif"'),
            ("image.convert", {"quality": 0}, "quality must be an integer from 1 to 100, got 0"),
            ("image.convert", {"quality": 80.5},
             "quality must be an integer from 1 to 100, got a number"),
            ("image.convert", {"width": 10}, 'unknown argument "width"'),
            ("image.thumbnail", {"widht": 10}, 'unknown argument "widht"'),
        ]
        lines = [good]
        for task, kw, _ in bad:
            lines += [{"task": task, "kwargs": kw}, good]
        lines += [{"task": "image.convert", "args": [1], "kwargs": {}}, good]
        r, got = self.batch(lines, src, dst, extra=["--max-tasks-per-child", "1000"])
        self.assertEqual(r.rc, 1, str(r))
        for i in range(0, len(lines), 2):
            self.assertEqual(got[i]["status"], "SUCCESS", "line %d\n%s" % (i + 1, r))
            res = dict(got[i]["result"], bytes=None)
            self.assertEqual(res, self.result(40, 30, "jpeg", None, 160, 120, "jpeg"))
        for j, (task, kw, why) in enumerate(bad):
            self.assertEqual(got[2 * j + 1], {"task": task, "status": "FAILURE",
                                              "exc_type": "ValueError",
                                              "exc_message": "%s: %s" % (task, why)},
                             "line %d\n%s" % (2 * j + 2, r))
        self.assertEqual(got[-2]["exc_type"], "ValueError")
        self.assertIn("takes keyword arguments only, got 1 positional", got[-2]["exc_message"])
        self.assertEqual(self.identify(dst), ("JPEG", 40, 30), "the last good task's output")

    def test_missing_files(self):
        src = self.picture("in.jpg", 64, 48)
        self.fails("image.thumbnail", {"width": 10}, None, self.path("out.jpg"), "ValueError",
                   'no input file: name it in kwargs files {"input": PATH}')
        self.fails("image.thumbnail", {"width": 10}, src, None, "ValueError",
                   'no output file: name it in kwargs outputs {"output": PATH}')
        r = self.run_task("image.thumbnail", {"width": 10}, src, None,
                          extra=["--file", "output=" + src])
        self.assertEqual(r.rc, 1, str(r))
        self.assertIn("ValueError: image.thumbnail: output is open read-only", r.stderr)

    def test_write_failure(self):
        """An output that cannot be written (/dev/full) is an ImageError
        naming the cause."""
        if not os.path.exists("/dev/full"):
            self.skipTest("no /dev/full")
        src = self.picture("in.jpg", 64, 48)
        self.fails("image.thumbnail", {"width": 10}, src, "/dev/full", "ImageError",
                   "cannot write the output: No space left on device", extra=["--root", "/dev"])

    def test_output_limits(self):
        """max_width/max_height bound the output, requested or computed."""
        src = self.picture("tall.png", 50, 400)
        dst = self.path("out.png")
        settings = {"max_width": 300, "max_height": 1000}
        self.fails("image.resize", {"width": 301}, src, dst, "ValueError",
                   "width 301 is above max_width 300", settings=settings)
        self.fails("image.resize", {"width": 200}, src, dst, "ValueError",
                   "the output would be 200x1600 pixels, above max_height 1000",
                   settings=settings)
        self.ok("image.resize", {"width": 100}, src, dst, settings=settings)
        self.assertEqual(self.identify(dst), ("PNG", 100, 800))
        self.fails("image.resize", {"height": 16384, "format": "webp"}, src, dst, "ValueError",
                   "the output would be 2048x16384 pixels; WebP holds at most 16383x16383")

    def test_settings_invalid(self):
        """A bad setting fails the plugin's init, naming the key."""
        src = self.picture("in.jpg", 64, 48)
        dst = self.path("out.jpg")
        for settings, why in (({"max_pixels": "lots"},
                               "settings.max_pixels must be an integer from 1 to"),
                              ({"max_width": 0}, "settings.max_width must be an integer from 1"),
                              ({"max_pixel": 5}, 'unknown setting "max_pixel"')):
            with self.subTest(settings=settings):
                r = self.run_task("image.thumbnail", {"width": 10}, src, dst, settings=settings)
                self.assertEqual(r.rc, 1, str(r))
                self.assertIn("ValueError: plugin image init failed: " + why, r.stderr)

    def test_soft_time_limit(self):
        """Past the soft time limit the computation stops between tiles."""
        src = self.picture("in.png", 1200, 900)
        dst = self.path("out.png")
        self.fails("image.convert", {}, src, dst, "SoftTimeLimitExceeded",
                   "stopped at the soft time limit", extra=["--soft-time-limit", "0.001"])
        self.assertEqual(os.path.getsize(dst), 0)

    def test_memory_100mp(self):
        """A 10000x10000 RGB JPEG thumbnails within the cap: shrink-on-load
        decodes it at 1/8 scale, whatever the content (a flat image here, so
        that it is quick to make; bench/image_bench.py measures a noisy one).
        RSS: wait4() on kiln gives the largest RSS of kiln and every
        descendant it waited for (its children)."""
        src = self.path("big.jpg")
        subprocess.run([tool("vips"), "black", src + "[Q=85]", "10000", "10000", "--bands", "3"],
                       check=True, timeout=60)
        dst = self.path("thumb.jpg")
        argv = [kilntest.KILN, "run", PLUGIN, "image.thumbnail", "--root", self.tmp,
                "--file", "input=" + src, "--out", "output=" + dst,
                "--kwargs", json.dumps({"width": 256})]
        with open(self.path("stdout"), "w+") as out, open(self.path("stderr"), "w+") as err:
            p = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True)
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            out, err = out.read(), err.read()
        self.assertEqual(p.returncode, 0, err)
        res = json.loads(out)
        self.assertEqual(res, self.result(256, 256, "jpeg", os.path.getsize(dst),
                                          10000, 10000, "jpeg"))
        self.assertEqual(self.identify(dst), ("JPEG", 256, 256))
        rss = usage.ru_maxrss * 1024
        sys.stderr.write("peak RSS of kiln and its children: %.1f MiB (cap %d MiB)\n"
                         % (rss / MIB, CAP // MIB))
        self.assertLess(rss, CAP, "peak RSS %.1f MiB" % (rss / MIB))


def _worker_test_class():
    """ImageWorkerTest, built on first use: harness.py imports Celery, which
    takes about a second, and only these tests need it."""
    from harness import WorkerTestCase, wait_until

    class ImageWorkerTest(Helpers, WorkerTestCase):
        """Tasks sent with the Celery client to `kiln worker`."""

        # --- kiln worker -----------------------------------------------------------

        def image_worker(self, root, concurrency=1):
            srv = self.redis()
            self.worker(srv, self.plugin_dir("image"), args=["--concurrency", str(concurrency)],
                        config={"roots": [root]})
            return srv, self.celery(srv)

        def test_worker_files_outputs(self):
            """Through kiln worker and the Celery client: files/outputs kwargs,
            the format from the output's extension, progress published."""
            src = self.picture("photo.jpg", 640, 480)
            srv, app = self.image_worker(self.tmp)
            seen = self.subscribe_results(srv)
            dst = self.path("thumb.webp")
            r = app.send_task("image.thumbnail", kwargs={"files": {"input": src},
                                                         "outputs": {"output": dst}, "width": 128})
            res = r.get(timeout=30)
            self.assertEqual(res, self.result(128, 96, "webp", os.path.getsize(dst),
                                              640, 480, "jpeg"))
            self.assertEqual(self.identify(dst), ("WEBP", 128, 96))
            # The subscriber may hear the last publish just after get() returns.
            wait_until(lambda: "SUCCESS" in seen.get(r.id, []), 10, "the SUCCESS publish")
            self.assertIn("PROGRESS", seen[r.id], "progress was published before SUCCESS")
            self.assertEqual(seen[r.id][-1], "SUCCESS", seen[r.id])

            dst = self.path("cover.png")
            res = app.send_task("image.resize", kwargs={
                "files": {"input": src}, "outputs": {"output": dst}, "width": 100, "height": 100,
                "fit": "cover"}).get(timeout=30)
            self.assertEqual(res, self.result(100, 100, "png", os.path.getsize(dst),
                                              640, 480, "jpeg"))
            self.assertEqual(self.identify(dst), ("PNG", 100, 100))

            r = app.send_task("image.convert", kwargs={"files": {"input": src},
                                                       "outputs": {"output": self.path("x.png")},
                                                       "format": "tiff"})
            with self.assertRaisesRegex(ValueError, 'format must be "jpeg", "png" or "webp"'):
                r.get(timeout=30)

        def test_worker_hostile_sequence(self):
            """Broken inputs between good ones in one pool of one child: each
            fails with its exact type and cause, and the next task succeeds."""
            good = self.picture("good.png", 200, 100)
            trunc = self.path("trunc.jpg")
            with open(self.picture("full.jpg", 600, 400), "rb") as f:
                data = f.read()
            with open(trunc, "wb") as f:
                f.write(data[: len(data) // 3])
            bomb = self.path("bomb.png")
            bomb_png(bomb, 100000, 100000)
            empty = self.path("empty.webp")
            open(empty, "wb").close()
            text = self.path("text.jpg")
            with open(text, "w") as f:
                f.write("<html>not an image</html>\n")
            gif = self.path("pic.gif")
            self.magick("-size", "16x16", "xc:red", gif)
            cases = [
                (trunc, "ImageError", 'input "%s" is truncated or corrupt: ' % trunc),
                (bomb, "DecompressionBombError",
                 'input "%s" claims 100000x100000 pixels, above max_pixels 250000000' % bomb),
                (empty, "ImageError", 'input "%s" is empty (0 bytes)' % empty),
                (text, "ImageError", 'input "%s" is not a JPEG, PNG or WebP image' % text),
                (gif, "ImageError", 'input "%s" is a GIF image' % gif),
            ]
            srv, app = self.image_worker(self.tmp, concurrency=1)
            order = [good]
            for path, _, _ in cases:
                order += [path, good]
            sent = []
            for i, path in enumerate(order):
                out = self.path("out%d.jpg" % i)
                sent.append((path, out, app.send_task("image.thumbnail", kwargs={
                    "files": {"input": path}, "outputs": {"output": out}, "width": 50})))
            expect = {c[0]: c for c in cases}
            for path, out, r in sent:
                if path == good:
                    self.assertEqual(r.get(timeout=60), self.result(50, 25, "jpeg",
                                                                    os.path.getsize(out),
                                                                    200, 100, "png"))
                    self.assertEqual(self.identify(out), ("JPEG", 50, 25))
                    continue
                _, exc_type, why = expect[path]
                with self.assertRaises(Exception) as cm:
                    r.get(timeout=60)
                self.assertEqual(type(cm.exception).__name__, exc_type, str(cm.exception))
                self.assertIn("image.thumbnail: " + why, str(cm.exception))
                self.assertEqual(os.path.getsize(out), 0)

    return ImageWorkerTest


def __getattr__(name):  # PEP 562: unittest finds the class by name
    if name == "ImageWorkerTest":
        cls = _worker_test_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def __dir__():
    return sorted(set(globals()) | {"ImageWorkerTest"})

if __name__ == "__main__":
    unittest.main(verbosity=2)
