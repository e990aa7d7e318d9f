#!/usr/bin/python3
"""The kiln command line as a user meets it (issue 2, 6), with examples/hello.

Usage: test_cli.py [CliTest.test_NAME ...]     (ctest runs one test each)

Exit statuses: 0 success, 1 task failed, 2 usage error, 3 plugin refused,
4 kiln could not set up.  Errors are "kiln: ..." lines on stderr.

Environment: KILN_BIN, KILN_PLUGINS (directory holding hello.so), KILN_VERSION.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hostile"))
import kilntest  # noqa: E402  (shared with the containment tests)
from kilntest import plugin, run_kiln  # noqa: E402

VERSION = os.environ.get("KILN_VERSION", "0.1.0")


def setUpModule():
    if not os.access(kilntest.KILN, os.X_OK):
        raise AssertionError("kiln binary not found: %s (set KILN_BIN)" % kilntest.KILN)
    kilntest.become_subreaper()


class CliTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.hello = plugin("hello")
        self.tmp = tempfile.mkdtemp(prefix="kiln-cli-")
        # Children run as an unprivileged uid: like a real plugin or data
        # directory, this one must be readable by others (mkdtemp makes 0700).
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def tearDown(self):
        kilntest.kill_all(kilntest.descendants())

    def kiln(self, *args, **kw):  # kw: stdin, cwd, timeout, env
        r = run_kiln(list(args), **kw)
        sys.stderr.write("%s\n" % r)
        return r

    def assert_usage_error(self, r, *names):
        """Exit 2 with a "kiln: " message on stderr naming each of names."""
        self.assertEqual(r.rc, 2, "a usage error exits 2\n%s" % r)
        self.assertEqual(r.stdout, "", "nothing on stdout\n%s" % r)
        self.assertIn("kiln: ", r.stderr, "the error says who is talking\n%s" % r)
        for name in names:
            self.assertIn(name, r.stderr, "the error names %r\n%s" % (name, r))

    def assert_task_failed(self, r, task, exc_type, pattern):
        self.assertEqual(r.rc, 1, "a failed task exits 1\n%s" % r)
        self.assertEqual(r.stdout, "", "no result on stdout\n%s" % r)
        m = re.search(r"^kiln: %s failed: (\w+): (.*)$" % re.escape(task), r.stderr, re.M)
        self.assertIsNotNone(m, "stderr: kiln: TASK failed: EXC_TYPE: MESSAGE\n%s" % r)
        self.assertEqual(m.group(1), exc_type, "exc_type\n%s" % r)
        self.assertRegex(m.group(2), pattern, "exc_message\n%s" % r)

    def assert_result(self, r, want):
        self.assertEqual(r.rc, 0, "a successful task exits 0\n%s" % r)
        self.assertTrue(r.stdout.endswith("\n"), "the result ends with a newline\n%s" % r)
        self.assertEqual(len(r.stdout.splitlines()), 1, "one line of JSON\n%s" % r)
        self.assertEqual(json.loads(r.stdout), want, "result\n%s" % r)
        self.assertEqual(r.leftovers, [], "processes left behind\n%s" % r)

    # --- help and version ---------------------------------------------------

    def test_help(self):
        r = self.kiln("--help")
        self.assertEqual(r.rc, 0, "%s" % r)
        self.assertRegex(r.stdout, r"(?i)^usage: kiln\b", "%s" % r)
        for cmd in ("run", "plugins"):
            self.assertRegex(r.stdout, r"(?m)^\s+%s\b" % cmd, "--help lists %s\n%s" % (cmd, r))
        self.assertEqual(r.stderr, "", "%s" % r)

    def test_version(self):
        r = self.kiln("--version")
        self.assertEqual(r.rc, 0, "%s" % r)
        self.assertRegex(r.stdout, r"^kiln %s\b" % re.escape(VERSION), "%s" % r)
        self.assertEqual(len(r.stdout.splitlines()), 1, "one line\n%s" % r)

    def test_run_help(self):
        r = self.kiln("run", "--help")
        self.assertEqual(r.rc, 0, "%s" % r)
        self.assertRegex(r.stdout, r"(?i)^usage: kiln run\b", "%s" % r)
        for opt in (
            "--args",
            "--kwargs",
            "--file",
            "--out",
            "--root",
            "--memory",
            "--time-limit",
            "--soft-time-limit",
            "--profile",
            "--batch",
        ):
            self.assertIn(opt, r.stdout, "kiln run --help documents %s\n%s" % (opt, r))

    def test_plugins_help(self):
        r = self.kiln("plugins", "--help")
        self.assertEqual(r.rc, 0, "%s" % r)
        self.assertRegex(r.stdout, r"(?i)^usage: kiln plugins\b.*\bDIR\b", "%s" % r)

    # --- usage errors ---------------------------------------------------------

    def test_no_command(self):
        r = self.kiln()
        self.assertEqual(r.rc, 2, "%s" % r)
        self.assertRegex(r.stderr, r"(?i)usage: kiln\b", "usage on stderr\n%s" % r)

    def test_unknown_command(self):
        r = self.kiln("frobnicate")
        self.assert_usage_error(r, "frobnicate")

    def test_unknown_option(self):
        r = self.kiln("run", self.hello, "hello.echo", "--frobnicate")
        self.assert_usage_error(r, "--frobnicate")

    def test_bad_args_json(self):
        r = self.kiln("run", self.hello, "hello.echo", "--args", "[1,]")
        # jansson's own words for this input.
        self.assert_usage_error(r, "--args", "unexpected token near ']'")

    def test_args_not_array(self):
        r = self.kiln("run", self.hello, "hello.echo", "--args", '{"a": 1}')
        self.assert_usage_error(r, "--args", "array")

    def test_kwargs_not_object(self):
        r = self.kiln("run", self.hello, "hello.echo", "--kwargs", "[1]")
        self.assert_usage_error(r, "--kwargs", "object")

    def test_bad_memory_size(self):
        r = self.kiln("run", self.hello, "hello.echo", "--memory", "12XB")
        self.assert_usage_error(r, "--memory", "12XB")

    def test_bad_time_limit(self):
        r = self.kiln("run", self.hello, "hello.echo", "--time-limit", "soon")
        self.assert_usage_error(r, "--time-limit", "soon")

    def test_unknown_task(self):
        r = self.kiln("run", self.hello, "hello.nope")
        self.assert_usage_error(r, "hello.nope")

    def test_missing_plugin(self):
        missing = os.path.join(self.tmp, "nope.so")
        r = self.kiln("run", missing, "hello.echo")
        self.assertEqual(r.rc, 3, "a plugin that cannot be loaded is refused\n%s" % r)
        self.assertRegex(
            r.stderr,
            r"(?m)^kiln: plugin %s refused: .*No such file or directory" % re.escape(missing),
            "%s" % r,
        )

    # --- files and roots -------------------------------------------------------

    def make_file(self, *parts):
        path = os.path.join(self.tmp, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("data\n")
        return path

    def test_file_inside_root(self):
        path = self.make_file("root", "in.txt")
        r = self.kiln(
            "run", self.hello, "hello.echo", "--root", os.path.dirname(path), "--file", "in=" + path
        )
        self.assert_result(r, [])

    def test_file_default_root_is_cwd(self):
        self.make_file("in.txt")
        r = self.kiln("run", self.hello, "hello.echo", "--file", "in=in.txt", cwd=self.tmp)
        self.assert_result(r, [])

    def test_file_outside_roots(self):
        root = os.path.dirname(self.make_file("root", "in.txt"))
        outside = self.make_file("elsewhere", "secret.txt")
        r = self.kiln("run", self.hello, "hello.echo", "--root", root, "--file", "in=" + outside)
        self.assert_usage_error(r, outside, os.path.realpath(root))

    def test_file_outside_default_root(self):
        r = self.kiln("run", self.hello, "hello.echo", "--file", "in=/etc/hostname", cwd=self.tmp)
        self.assert_usage_error(r, "/etc/hostname", os.path.realpath(self.tmp))

    def test_file_dotdot_escape(self):
        root = os.path.dirname(self.make_file("root", "in.txt"))
        self.make_file("elsewhere", "secret.txt")
        sneaky = os.path.join(root, "..", "elsewhere", "secret.txt")
        r = self.kiln("run", self.hello, "hello.echo", "--root", root, "--file", "in=" + sneaky)
        self.assert_usage_error(r, sneaky)

    def test_file_symlink_escape(self):
        root = os.path.dirname(self.make_file("root", "in.txt"))
        link = os.path.join(root, "link")
        os.symlink("/etc/hostname", link)
        r = self.kiln("run", self.hello, "hello.echo", "--root", root, "--file", "in=" + link)
        self.assert_usage_error(r, link)

    def test_out_outside_roots(self):
        root = os.path.dirname(self.make_file("root", "in.txt"))
        target = os.path.join(self.tmp, "elsewhere-out.txt")
        r = self.kiln("run", self.hello, "hello.echo", "--root", root, "--out", "out=" + target)
        self.assert_usage_error(r, target)
        self.assertFalse(os.path.exists(target), "a refused --out was still created\n%s" % r)

    # --- the hello plugin ------------------------------------------------------

    def test_echo(self):
        args = [1, "two", {"three": [3.5, None, True]}]
        r = self.kiln("run", self.hello, "hello.echo", "--args", json.dumps(args))
        self.assert_result(r, args)

    def test_settings(self):
        tt = plugin("testtasks")
        r = self.kiln("run", tt, "t.settings", "--settings", '{"max_pixels": 5, "x": [1]}')
        self.assert_result(r, {"max_pixels": 5, "x": [1]})
        r = self.kiln("run", tt, "t.settings")
        self.assert_result(r, {})

    def test_probe_cache(self):
        """The second `kiln run` of an unchanged plugin file takes its
        description from the probe cache; a changed file, a cache directory
        others can write, or KILN_PROBE_CACHE=0 mean a probe again."""
        cache = os.path.join(self.tmp, "cache")
        so = os.path.join(self.tmp, "hello.so")
        shutil.copyfile(self.hello, so)
        os.chmod(so, 0o755)
        env = {"KILN_CACHE_DIR": cache}
        hit = "description from the probe cache"

        def run(**extra):
            r = self.kiln("run", "-v", so, "hello.echo", "--args", "[5]",
                          env=dict(env, **extra))
            self.assert_result(r, [5])
            return hit in r.stderr

        self.assertFalse(run(), "the first run probes")
        self.assertEqual(oct(os.stat(cache).st_mode & 0o777), "0o700")
        self.assertTrue(run(), "the second run uses the cache")
        self.assertFalse(run(KILN_PROBE_CACHE="0"), "KILN_PROBE_CACHE=0 probes")
        st = os.stat(so)
        os.utime(so, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
        self.assertFalse(run(), "a changed file is probed again")
        self.assertTrue(run())
        entries = [os.path.join(cache, f) for f in os.listdir(cache)]
        self.assertEqual(len(entries), 2, entries)  # one per version of the file
        for bad in (b"\x00garbage{", b'{"identity": "elsewhere", "hello": {}}',
                    b'{"identity": 5}', b""):
            for e in entries:
                with open(e, "wb") as f:
                    f.write(bad)
            self.assertFalse(run(), "a damaged cache entry (%r) means a probe" % bad)
            self.assertTrue(run(), "which writes a good entry again")
        os.chmod(cache, 0o777)
        self.assertFalse(run(), "a cache directory others can write is not used")

    def test_settings_not_object(self):
        r = self.kiln("run", self.hello, "hello.echo", "--settings", "[1]")
        self.assert_usage_error(r, "--settings", "must be a JSON object, got [1]")

    def test_options_before_positionals(self):
        r = self.kiln("run", "--args", "[7]", self.hello, "hello.echo")
        self.assert_result(r, [7])

    def test_echo_no_args(self):
        r = self.kiln("run", self.hello, "hello.echo")
        self.assert_result(r, [])

    def test_fail(self):
        r = self.kiln("run", self.hello, "hello.fail", "--args", '["boom: it broke"]')
        self.assert_task_failed(r, "hello.fail", "ValueError", r"^boom: it broke$")

    def test_soft_time_limit(self):
        r = self.kiln(
            "run", self.hello, "hello.sleep", "--args", "[10]", "--soft-time-limit", "0.2"
        )
        self.assertEqual(r.rc, 0, "%s" % r)
        slept = json.loads(r.stdout)
        self.assertGreaterEqual(slept, 0.15, "slept until the soft limit\n%s" % r)
        self.assertLess(slept, 1.0, "stopped early at the soft limit\n%s" % r)
        self.assertLess(r.elapsed, 5.0, "kiln returned early\n%s" % r)
        self.assertEqual(r.leftovers, [], "%s" % r)

    def test_hard_time_limit(self):
        r = self.kiln("run", self.hello, "hello.sleep", "--args", "[30]", "--time-limit", "1")
        self.assert_task_failed(
            r, "hello.sleep", "TimeLimitExceeded", r"(?<![\d.])1(\.0+)? ?(s|sec|secs|seconds)\b"
        )
        self.assertLess(r.elapsed, 10.0, "the child was killed at its hard limit\n%s" % r)
        self.assertEqual(r.leftovers, [], "%s" % r)

    def test_batch_stdin(self):
        lines = [
            {"task": "hello.echo", "args": [1, 2], "kwargs": {}},
            {"task": "hello.fail", "args": ["nope"]},
            {"task": "hello.echo"},
        ]
        r = self.kiln(
            "run", self.hello, "--batch", "-", stdin="".join(json.dumps(l) + "\n" for l in lines)
        )
        self.assertEqual(r.rc, 1, "a task failed, so 1\n%s" % r)
        got = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual(
            got,
            [
                {"task": "hello.echo", "status": "SUCCESS", "result": [1, 2]},
                {
                    "task": "hello.fail",
                    "status": "FAILURE",
                    "exc_type": "ValueError",
                    "exc_message": "nope",
                },
                {"task": "hello.echo", "status": "SUCCESS", "result": []},
            ],
            "%s" % r,
        )
        self.assertEqual(r.leftovers, [], "%s" % r)

    def test_batch_file_concurrency(self):
        path = os.path.join(self.tmp, "tasks.jsonl")
        with open(path, "w") as f:
            for i in range(8):
                f.write(json.dumps({"task": "hello.echo", "args": [i]}) + "\n")
        r = self.kiln("run", self.hello, "--batch", path, "--concurrency", "3")
        self.assertEqual(r.rc, 0, "%s" % r)
        got = [json.loads(l) for l in r.stdout.splitlines()]
        want = [{"task": "hello.echo", "status": "SUCCESS", "result": [i]} for i in range(8)]
        self.assertEqual(got, want, "one line per task, in input order\n%s" % r)
        self.assertEqual(r.leftovers, [], "%s" % r)

    def test_batch_bad_line(self):
        batch = '{"task": "hello.echo"}\n{"args": []}\n'
        r = self.kiln("run", self.hello, "--batch", "-", stdin=batch)
        self.assert_usage_error(r, "line 2")

    def test_plugins_list(self):
        d = os.path.join(self.tmp, "plugins")
        os.mkdir(d)
        shutil.copy(self.hello, d)
        r = self.kiln("plugins", d)
        self.assertEqual(r.rc, 0, "%s" % r)
        words = ("hello.so", "1.0.0", "hello.echo", "hello.sleep", "hello.fail", "compute")
        for word in words:
            self.assertIn(word, r.stdout, "kiln plugins shows %r\n%s" % (word, r))
        self.assertRegex(r.stdout, r"ABI 1\.1\b", "%s" % r)
        self.assertEqual(r.leftovers, [], "%s" % r)


if __name__ == "__main__":
    unittest.main(verbosity=2)
