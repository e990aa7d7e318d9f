#!/usr/bin/python3
"""Files handed to tasks by the worker (issue 2 section 3, issue 3).

A Celery task names its files in kwargs "files" (read) and "outputs"
(created); the worker opens them beneath the config's "roots" and hands the
child descriptors.  A path outside the roots, or escaping them through ".."
or a symlink, fails the task with PermissionError naming the path; the
handler never runs and the file is not created.

Usage: test_files.py [WorkerTest.test_NAME ...]
"""

import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import WorkerTestCase, main  # noqa: E402


class WorkerTest(WorkerTestCase):

    def test_files_and_roots(self):
        srv = self.redis()
        root = tempfile.mkdtemp(prefix="kiln-files-root-")
        outside = tempfile.mkdtemp(prefix="kiln-files-outside-")
        self.addCleanup(lambda: os.system("rm -rf '%s' '%s'" % (root, outside)))
        src = os.path.join(root, "in.bin")
        data = os.urandom(100000)
        with open(src, "wb") as f:
            f.write(data)
        secret = os.path.join(outside, "secret")
        with open(secret, "wb") as f:
            f.write(b"not for tasks")
        os.symlink(secret, os.path.join(root, "link"))
        self.worker(srv, self.plugin_dir("testtasks"), config={"roots": [root]})
        app = self.celery(srv)

        dst = os.path.join(root, "out.bin")
        r = app.send_task("t.copy", kwargs={"files": {"input": src}, "outputs": {"output": dst}})
        self.assertEqual(r.get(timeout=20), len(data))
        with open(dst, "rb") as f:
            self.assertEqual(f.read(), data)

        for bad in (secret, os.path.join(root, "..", os.path.basename(outside), "secret"),
                    os.path.join(root, "link")):
            out = os.path.join(root, "never.bin")
            r = app.send_task("t.copy", kwargs={"files": {"input": bad},
                                                 "outputs": {"output": out}})
            with self.assertRaises(PermissionError) as cm:
                r.get(timeout=20)
            self.assertIn(bad, str(cm.exception), "the error names the path")
            self.assertFalse(os.path.exists(out), "the output was not created")

        r = app.send_task("t.copy", kwargs={"files": "not an object"})
        with self.assertRaisesRegex(ValueError, "kwargs.files must be an object"):
            r.get(timeout=20)


if __name__ == "__main__":
    main()
