#!/usr/bin/python3
"""Containment tests: one hostile plugin per misbehaviour (see issue 2, 7).

Usage: run_hostile.py [CASE...]      no CASE runs them all; ctest runs one each.

Plugin build/plugins/hostile_<x>.so has tasks "<x>.run" (the misbehaviour) and
"<x>.ok" (returns "ok").  A case feeds "<x>.ok", "<x>.run", "<x>.ok" to one
`kiln run --batch -` (one supervisor, one pool) and asserts:

  * the hostile task's exact exc_type and a message naming the cause;
  * the .ok tasks before and after it succeed: the child was replaced;
  * nothing kiln started is alive once kiln has exited (this process is a
    child subreaper, so an orphaned descendant is re-parented here), and no
    kiln-<pid> cgroup directory is left;
  * for the memory bombs, no waited-for descendant's RSS passed the cap
    (getrusage(RUSAGE_CHILDREN).ru_maxrss; each ctest entry is its own
    process, so earlier cases do not count).

mmap_sparse and fsize_bomb need --file/--out, which `kiln run` takes only
without --batch, so their hostile task runs alone.

Plugins that must be refused (constructor tricks, wrong ABI) are checked with
`kiln run` (exit 3, "kiln: plugin PATH refused: MESSAGE") and with
`kiln plugins DIR`, which must name the refused .so and why and still list the
good plugin beside it.

supervisor_killed SIGKILLs kiln while hostile_busy_loop spins and checks that
no child outlives it.

Environment: KILN_BIN (the binary), KILN_PLUGINS (directory of the .so files).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import kilntest  # noqa: E402
from kilntest import plugin, run_kiln  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
RSS_MARGIN = 32 * MIB  # libc, jansson and the runtime's own pages above the cap
PAGE = os.sysconf("SC_PAGESIZE")


def memory_cgroup_available():
    """Whether the kernel offers a memory cgroup (v1 hierarchy or v2 controller)."""
    if os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        return True
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            return "memory" in f.read().split()
    except OSError:
        return False


def cap_pattern(cap):
    """A message naming a cap of `cap` bytes: "134217728", "128 MiB", "128M"..."""
    mib = cap // MIB
    return r"\b%d\b|\b%d ?(MiB|MB|M)\b" % (cap, mib)


class HostileTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kiln-hostile-")
        # Children run as an unprivileged uid: like a real plugin or data
        # directory, this one must be readable by others (mkdtemp makes 0700).
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def tearDown(self):
        # Safety net: whatever a failed case left running dies here.
        kilntest.kill_all(kilntest.descendants())

    # --- running -------------------------------------------------------

    def plugin_path(self, x):
        path = plugin("hostile_" + x)
        self.assertTrue(os.path.exists(path), "plugin not built: %s" % path)
        return path

    def batch(self, x, args=(), opts=()):
        """Run <x>.ok, <x>.run(args), <x>.ok in one supervisor; return the
        Result with .lines parsed and the hostile task's line as .outcome."""
        tasks = [
            {"task": x + ".ok", "args": [], "kwargs": {}},
            {"task": x + ".run", "args": list(args), "kwargs": {}},
            {"task": x + ".ok", "args": [], "kwargs": {}},
        ]
        stdin = "".join(json.dumps(t) + "\n" for t in tasks)
        # Options first: containment, not option parsing, is under test here.
        r = run_kiln(["run"] + list(opts) + ["--batch", "-", self.plugin_path(x)], stdin=stdin)
        sys.stderr.write("%s\n" % r)
        try:
            r.lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        except ValueError as e:
            self.fail("stdout is not JSON lines (%s)\n%s" % (e, r))
        self.assertEqual(len(r.lines), len(tasks), "one JSON line per task\n%s" % r)
        for task, line in zip(tasks, r.lines):
            self.assertEqual(line.get("task"), task["task"], "lines in input order\n%s" % r)
        r.outcome = r.lines[1]
        return r

    def single(self, x, opts=()):
        """Run <x>.run alone (`kiln run` takes --file/--out only without
        --batch); return the Result with .outcome in the batch line format,
        parsed from stdout (exit 0) or "kiln: TASK failed: EXC: MSG" (exit 1)."""
        task = x + ".run"
        r = run_kiln(["run"] + list(opts) + [self.plugin_path(x), task])
        sys.stderr.write("%s\n" % r)
        if r.rc == 0:
            try:
                r.outcome = {"task": task, "status": "SUCCESS", "result": json.loads(r.stdout)}
            except ValueError as e:
                self.fail("stdout is not the result JSON (%s)\n%s" % (e, r))
            self.assertTrue(r.stdout.endswith("\n"), "result ends with a newline\n%s" % r)
            return r
        self.assertEqual(r.rc, 1, "a failed task exits 1\n%s" % r)
        self.assertEqual(r.stdout, "", "no result on stdout\n%s" % r)
        m = re.search(r"^kiln: %s failed: (\w+): (.*)$" % re.escape(task), r.stderr, re.M)
        self.assertIsNotNone(m, "stderr: kiln: TASK failed: EXC_TYPE: MESSAGE\n%s" % r)
        r.outcome = {
            "task": task,
            "status": "FAILURE",
            "exc_type": m.group(1),
            "exc_message": m.group(2),
        }
        return r

    # --- assertions ------------------------------------------------------

    def assert_failure(self, r, exc_type, pattern):
        """The hostile task failed with exc_type and a message matching
        pattern; returns the match."""
        out = r.outcome
        self.assertEqual(
            (out.get("status"), out.get("exc_type")),
            ("FAILURE", exc_type),
            "hostile task outcome: %r\n%s" % (out, r),
        )
        msg = out.get("exc_message")
        self.assertIsInstance(msg, str, "exc_message\n%s" % r)
        m = re.search(pattern, msg)
        self.assertIsNotNone(m, "exc_message %r should match %r\n%s" % (msg, pattern, r))
        return m

    def assert_recovered(self, r):
        """The tasks around the hostile one ran, the exit status matches the
        outcomes, and nothing was left behind."""
        for i in (0, 2):
            self.assertEqual(
                r.lines[i],
                {"task": r.lines[i]["task"], "status": "SUCCESS", "result": "ok"},
                "task %d (%s) must succeed: the child was replaced\n%s"
                % (i, r.lines[i].get("task"), r),
            )
        want = 0 if all(line.get("status") == "SUCCESS" for line in r.lines) else 1
        self.assertEqual(r.rc, want, "exit status\n%s" % r)
        self.assert_nothing_left(r)

    def assert_nothing_left(self, r):
        self.assertEqual(r.leftovers, [], "processes left behind after kiln exited\n%s" % r)
        self.assertEqual(r.cgroups, [], "cgroups left behind after kiln exited\n%s" % r)

    def assert_rss_under(self, r, cap):
        rss = kilntest.max_child_rss()
        sys.stderr.write(
            "max RSS of any descendant: %.1f MiB (cap %d MiB)\n" % (rss / MIB, cap // MIB)
        )
        self.assertLessEqual(
            rss,
            cap + RSS_MARGIN,
            "a descendant's RSS reached %.1f MiB, above the %d MiB cap + %d MiB\n%s"
            % (rss / MIB, cap // MIB, RSS_MARGIN // MIB, r),
        )

    def assert_refused(self, x, why):
        """kiln refuses hostile_<x>.so with a reason matching `why`, in
        `kiln run` and in `kiln plugins DIR`, which still lists hello."""
        path = self.plugin_path(x)
        r = run_kiln(["run", path, x + ".ok"])
        sys.stderr.write("%s\n" % r)
        self.assertEqual(r.rc, 3, "a refused plugin exits 3\n%s" % r)
        self.assertEqual(r.stdout, "", "no result on stdout\n%s" % r)
        m = re.search(
            r"^kiln: plugin (\S*%s) refused: (.+)$" % re.escape(os.path.basename(path)),
            r.stderr,
            re.M,
        )
        self.assertIsNotNone(m, "stderr: kiln: plugin PATH refused: MESSAGE\n%s" % r)
        self.assertRegex(m.group(2), why, "the refusal names the cause\n%s" % r)
        self.assert_nothing_left(r)

        # The listing names it and why, and lists the good plugin next to it.
        listdir = os.path.join(self.tmp, "plugins")
        os.mkdir(listdir)
        shutil.copy(path, listdir)
        shutil.copy(plugin("hello"), listdir)
        r = run_kiln(["plugins", listdir])
        sys.stderr.write("%s\n" % r)
        self.assertEqual(r.rc, 3, "kiln plugins exits 3 when it refused a plugin\n%s" % r)
        text = r.stdout + r.stderr
        lines = [i for i, line in enumerate(text.splitlines()) if os.path.basename(path) in line]
        self.assertTrue(lines, "kiln plugins names the refused .so\n%s" % r)
        near = "\n".join(text.splitlines()[lines[0] : lines[0] + 2])
        self.assertRegex(near, why, "kiln plugins says why it refused it\n%s" % r)
        for task in ("hello.echo", "hello.sleep", "hello.fail"):
            self.assertIn(task, r.stdout, "kiln plugins still lists hello\n%s" % r)
        self.assert_nothing_left(r)

    # --- processes -------------------------------------------------------

    def test_fork_bomb(self):
        r = self.batch("fork_bomb")
        # glibc's fork() is the clone syscall.
        self.assert_failure(
            r,
            "SandboxViolation",
            r"forbidden syscall (clone|clone3|fork|vfork) under profile compute",
        )
        self.assert_recovered(r)

    def test_thread_bomb(self):
        r = self.batch("thread_bomb")
        m = self.assert_failure(
            r, "RuntimeError", r"^thread (\d+): Resource temporarily unavailable$"
        )
        n = int(m.group(1))
        self.assertGreaterEqual(n, 1, "the threads profile must allow threads\n%s" % r)
        # Minimal stacks under a 512 MiB cap: memory would allow well over
        # 10000 threads, so stopping below that is the process limit.
        self.assertLess(n, 10000, "RLIMIT_NPROC or the pids cgroup must stop the bomb\n%s" % r)
        self.assert_recovered(r)

    def test_execve_sh(self):
        marker = os.path.join(self.tmp, "pwned")
        r = self.batch("execve_sh", args=[marker])
        self.assert_failure(
            r, "SandboxViolation", r"forbidden syscall execve under profile compute"
        )
        self.assertFalse(os.path.exists(marker), "/bin/sh ran: %s exists\n%s" % (marker, r))
        self.assert_recovered(r)

    def test_ptrace_parent(self):
        r = self.batch("ptrace_parent")
        self.assert_failure(
            r, "SandboxViolation", r"forbidden syscall ptrace under profile compute"
        )
        self.assert_recovered(r)

    def test_segfault(self):
        r = self.batch("segfault")
        self.assert_failure(r, "WorkerLostError", r"\bSIGSEGV\b")
        self.assert_recovered(r)

    def test_stack_overflow(self):
        r = self.batch("stack_overflow")
        self.assert_failure(r, "WorkerLostError", r"\bSIGSEGV\b")
        self.assert_recovered(r)

    def test_busy_loop(self):
        r = self.batch("busy_loop")  # the plugin's policy: time_limit 2 s
        self.assert_failure(r, "TimeLimitExceeded", r"(?<![\d.])2(\.0+)? ?(s|sec|secs|seconds)\b")
        self.assertGreaterEqual(r.elapsed, 2.0, "killed before its 2 s limit\n%s" % r)
        self.assertLess(r.elapsed, 15.0, "the 2 s hard limit took too long\n%s" % r)
        self.assert_recovered(r)

    # --- memory and files -------------------------------------------------

    def test_malloc_bomb(self):
        cap = 128 * MIB  # the plugin's policy
        r = self.batch("malloc_bomb")
        if memory_cgroup_available():
            self.assert_failure(r, "MemoryLimitExceeded", cap_pattern(cap))
        else:
            # RLIMIT_AS fallback: malloc says no and the handler reports it.
            self.assert_failure(r, "MemoryError", r"^malloc of 64 MB failed after \d+ MB$")
        self.assert_rss_under(r, cap)
        self.assert_recovered(r)

    # These two need --file/--out, which `kiln run` takes only without
    # --batch: the hostile task runs alone, so "the next task runs" is proven
    # by the batch cases above, not here.

    def test_mmap_sparse(self):
        cap = 128 * MIB  # the plugin's policy
        big = os.path.join(self.tmp, "big")
        with open(big, "wb") as f:
            f.truncate(4 * GIB)
        try:
            r = self.single("mmap_sparse", opts=["--root", self.tmp, "--file", "big=" + big])
        finally:
            os.unlink(big)
        out = r.outcome
        sys.stderr.write("mmap_sparse outcome: %r\n" % out)
        # Three contained outcomes: the memory cgroup reclaims the clean
        # page-cache pages and the read completes; or it kills the child; or
        # the address-space limit refuses the mapping.  The RSS check is what
        # proves containment in all three.
        if out.get("status") == "SUCCESS":
            want = {"pages": 4 * GIB // PAGE, "sum": 0}
            self.assertEqual(out.get("result"), want, "result of a full read\n%s" % r)
        elif out.get("exc_type") == "MemoryLimitExceeded":
            self.assert_failure(r, "MemoryLimitExceeded", cap_pattern(cap))
        else:
            self.assert_failure(
                r, "MemoryError", r"^mmap of 4294967296 bytes: Cannot allocate memory$"
            )
        self.assert_rss_under(r, cap)
        self.assert_nothing_left(r)

    def test_fsize_bomb(self):
        out = os.path.join(self.tmp, "out")
        r = self.single("fsize_bomb", opts=["--root", self.tmp, "--out", "out=" + out])
        size = os.path.getsize(out) if os.path.exists(out) else 0
        sys.stderr.write("size of %s after the run: %d bytes\n" % (out, size))
        self.assert_failure(r, "FileSizeLimitExceeded", r"(?i)file.?size|fsize|SIGXFSZ|\bbytes\b")
        self.assertGreater(size, 0, "the handler wrote through its descriptor\n%s" % r)
        self.assertLess(size, 10 * GIB, "the file reached 10 GB\n%s" % r)
        self.assert_nothing_left(r)

    def test_open_shadow(self):
        r = self.batch("open_shadow")
        self.assert_failure(
            r, "PermissionError", r"^open /etc/shadow: (Permission denied|Operation not permitted)$"
        )
        self.assert_recovered(r)

    def test_connect_local(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            port = listener.getsockname()[1]
            r = self.batch("connect_local", args=[port])
            self.assert_failure(
                r, "SandboxViolation", r"forbidden syscall socket under profile compute"
            )
            listener.setblocking(False)
            try:
                conn, peer = listener.accept()
                conn.close()
                self.fail("the child connected to 127.0.0.1:%d from %s\n%s" % (port, peer, r))
            except BlockingIOError:
                pass
        self.assert_recovered(r)

    # --- the IPC channel ---------------------------------------------------

    def test_ipc_garbage(self):
        r = self.batch("ipc_garbage")
        # 0xdeadbeef... as a header: type and length are both 4022250974.
        self.assert_failure(r, "ProtocolError", r"(?i)\btype\b|\b4022250974\b")
        self.assert_recovered(r)

    def test_ipc_huge_frame(self):
        r = self.batch("ipc_huge_frame")
        self.assert_failure(r, "ProtocolError", r"\b1073741824\b")
        self.assert_recovered(r)

    # --- the supervisor itself dies ----------------------------------------

    def test_supervisor_killed(self):
        """SIGKILL the supervisor while a child spins: the children must not
        outlive it (parent-death signal, pid namespace)."""
        proc = subprocess.Popen(
            [kilntest.KILN, "run", self.plugin_path("busy_loop"), "busy_loop.run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Wait until the task runs: a grandchild of kiln (a child of its
        # zygote) spinning on a CPU.
        spinning = []
        deadline = time.monotonic() + 10
        while not spinning and time.monotonic() < deadline:
            table = kilntest.proc_table()
            spinning = [
                pid
                for pid, state, _, _ in kilntest.descendants(proc.pid)
                if state == "R" and pid in table and table[pid][0] != proc.pid
            ]
            time.sleep(0.02)
        before = kilntest.descendants(proc.pid)
        proc.kill()
        proc.wait()
        sys.stderr.write("under kiln before SIGKILL: %r\n" % before)
        self.assertTrue(spinning, "the busy child was running before kiln was killed")
        deadline = time.monotonic() + kilntest.LEFTOVER_GRACE
        while True:
            kilntest.reap()
            left = kilntest.descendants()
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        kilntest.kill_all(left)
        self.assertEqual(left, [], "processes outlived their SIGKILLed supervisor")

    # --- plugins kiln must refuse --------------------------------------------

    def test_ctor_socket(self):
        self.assert_refused("ctor_socket", r"\bsocket\b")

    def test_ctor_execve(self):
        marker = "/tmp/kiln-hostile-ctor-execve"  # fixed in the plugin
        if os.path.exists(marker):
            os.unlink(marker)
        self.assert_refused("ctor_execve", r"\bexecve\b")
        self.assertFalse(
            os.path.exists(marker), "the constructor's /bin/sh ran: %s exists" % marker
        )

    def test_ctor_tmpfile(self):
        marker = "/tmp/kiln-hostile-ctor-tmpfile"  # fixed in the plugin
        if os.path.exists(marker):
            os.unlink(marker)
        # Trapped by the loader filter (plugin refused) or refused by
        # Landlock (the plugin loads; its run task reports the errno).
        r = run_kiln(["run", self.plugin_path("ctor_tmpfile"), "ctor_tmpfile.run"])
        sys.stderr.write("%s\n" % r)
        self.assertFalse(os.path.exists(marker), "the constructor created %s\n%s" % (marker, r))
        if r.rc == 3:
            self.assert_refused("ctor_tmpfile", r"\b(open|openat|openat2|creat)\b")
        else:
            self.assertEqual(r.rc, 1, "the run task fails\n%s" % r)
            self.assertRegex(
                r.stderr,
                r"(?m)^kiln: ctor_tmpfile\.run failed: PermissionError: constructor: open "
                r"/tmp/kiln-hostile-ctor-tmpfile: (Permission denied|Operation not permitted)$",
                "the constructor was refused the file\n%s" % r,
            )
            self.assert_nothing_left(r)
            r = self.batch("ctor_tmpfile")
            self.assert_failure(r, "PermissionError", r"^constructor: open ")
            self.assert_recovered(r)
        self.assertFalse(os.path.exists(marker), "the constructor created %s" % marker)

    def test_wrong_abi(self):
        self.assert_refused("wrong_abi", r"ABI 99\.0\b.*\b1\.1\b")


def main(argv):
    known = sorted(n[len("test_") :] for n in dir(HostileTest) if n.startswith("test_"))
    cases = argv[1:] or known
    unknown = [c for c in cases if c not in known]
    if unknown:
        sys.stderr.write("unknown case(s) %s; known: %s\n" % (" ".join(unknown), " ".join(known)))
        return 2
    if not os.access(kilntest.KILN, os.X_OK):
        sys.stderr.write("kiln binary not found: %s (set KILN_BIN)\n" % kilntest.KILN)
        return 1
    kilntest.become_subreaper()
    suite = unittest.TestSuite(HostileTest("test_" + c) for c in cases)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
