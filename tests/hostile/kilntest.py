"""Shared helpers for the tests that drive the real kiln binary.

Runs kiln in its own session with a timeout, and checks afterwards that
nothing kiln started is still alive: the test process makes itself a child
subreaper (prctl PR_SET_CHILD_SUBREAPER), so every process kiln leaves behind
is re-parented to it instead of to init, where /proc shows it as our
descendant.  Standard library only.
"""

import ctypes
import os
import resource
import shlex
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
KILN = os.environ.get("KILN_BIN", os.path.join(SOURCE_ROOT, "build", "kiln"))
PLUGINS = os.environ.get("KILN_PLUGINS", os.path.join(SOURCE_ROOT, "build", "plugins"))

RUN_TIMEOUT = 100  # seconds per kiln invocation; ctest kills the test at 120
LEFTOVER_GRACE = 5.0  # seconds for children to follow their supervisor out
SHOW = 6000  # characters of stdout/stderr shown in failure messages

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Make orphaned descendants re-parent to this process (Linux >= 3.4)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(err))


def plugin(name):
    """Path of build/plugins/<name>.so."""
    return os.path.join(PLUGINS, name + ".so")


def proc_table():
    """pid -> (ppid, state, comm) for every process /proc shows."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        lpar, rpar = data.find("("), data.rfind(")")
        fields = data[rpar + 2 :].split()
        if lpar < 0 or rpar < 0 or len(fields) < 2:
            continue
        table[int(name)] = (int(fields[1]), fields[0], data[lpar + 1 : rpar])
    return table


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def descendants(root=None):
    """Live (not zombie) descendants of root (default: this process) as
    [(pid, state, comm, cmdline)]."""
    root = os.getpid() if root is None else root
    table = proc_table()
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            ppid, state, comm = table[pid]
            if state != "Z":
                found.append((pid, state, comm, _cmdline(pid)))
    return found


def reap():
    """Wait for every exited child (orphans re-parented here included), so
    their resource usage lands in RUSAGE_CHILDREN."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_all(procs):
    for pid, _, _, _ in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while descendants() and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    reap()


def cgroup_dirs(kiln_pid):
    """Cgroup directories named kiln-<pid> (sandbox.h's per-supervisor
    directories) still present under /sys/fs/cgroup, at most 4 levels down."""
    name = "kiln-%d" % kiln_pid
    found = []
    base = "/sys/fs/cgroup"
    for top, dirs, _ in os.walk(base):
        depth = top[len(base) :].count(os.sep)
        if name in dirs:
            found.append(os.path.join(top, name))
        if depth >= 4:
            dirs[:] = []
    return found


def max_child_rss():
    """Largest RSS of any waited-for descendant so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


class Result:
    """One finished kiln invocation."""

    def __init__(self, argv, stdin, rc, out, err, elapsed, pid):
        self.argv, self.stdin, self.rc = argv, stdin, rc
        self.stdout, self.stderr, self.elapsed, self.pid = out, err, elapsed, pid
        self.leftovers = []  # processes alive after kiln exited (then killed)
        self.cgroups = []  # kiln-<pid> cgroup directories left after exit
        self.lines = []  # parsed JSON lines of a --batch run

    def __str__(self):
        def cut(s):
            return s if len(s) <= SHOW else s[:SHOW] + "... (%d more chars)\n" % (len(s) - SHOW)

        text = "$ %s\n" % " ".join(shlex.quote(a) for a in self.argv)
        if self.stdin:
            text += "--- stdin\n" + cut(self.stdin)
        status = "exit %d" % self.rc if self.rc >= 0 else "killed by signal %d" % -self.rc
        text += "%s after %.2f s\n--- stdout\n%s--- stderr\n%s---" % (
            status,
            self.elapsed,
            cut(self.stdout),
            cut(self.stderr),
        )
        for pid, state, comm, cmd in self.leftovers:
            text += "\nleft behind: pid %d state %s comm %s cmdline %r" % (pid, state, comm, cmd)
        for d in self.cgroups:
            text += "\nleft behind: cgroup %s" % d
        return text


def run_kiln(args, stdin=None, cwd=None, timeout=RUN_TIMEOUT, env=None):
    """Run kiln with args; wait; collect and kill anything it left behind.

    Output goes to files, not pipes, so that a descendant holding kiln's
    stdout open cannot keep the test waiting after kiln itself exited."""
    argv = [KILN] + list(args)
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, \
            tempfile.TemporaryFile() as ferr:
        if stdin is not None:
            fin.write(stdin.encode())
            fin.seek(0)
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=fin if stdin is not None else subprocess.DEVNULL,
            stdout=fout,
            stderr=ferr,
            cwd=cwd,
            env=dict(os.environ, **env) if env else None,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        elapsed = time.monotonic() - start
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    res = Result(
        argv,
        stdin,
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        elapsed,
        proc.pid,
    )
    if timed_out:
        res.stderr += "\n[test: kiln did not finish within %d s and was killed]\n" % timeout

    # Children must follow their supervisor out (parent-death signal, pid
    # namespace); give them a moment, then record and kill what is left.
    deadline = time.monotonic() + LEFTOVER_GRACE
    while True:
        reap()
        left = descendants()
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    res.leftovers = left
    kill_all(left)
    res.cgroups = cgroup_dirs(proc.pid)
    return res
