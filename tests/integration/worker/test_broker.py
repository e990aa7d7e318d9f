#!/usr/bin/python3
"""`kiln worker` and its broker (issue 3, sections 5 and 8).

A worker started before Redis waits and then serves; an evicting
maxmemory-policy is refused unless overridden; with no broker it starts a
private redis-server and prints the URL producers should use; passwords and
ACL users come from the environment or a file, never from argv.

Usage: test_broker.py [WorkerTest.test_NAME ...]
"""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import RedisServer, WorkerTestCase, free_port, log, main, wait_until  # noqa: E402

import redis  # noqa: E402
from celery import Celery  # noqa: E402

PW = "s3cret-\u00e9t\u00e9:pw"  # a ':' and non-ASCII, %-encoded in URLs
PW_URL = "s3cret-%C3%A9t%C3%A9%3Apw"


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().decode("utf-8", "replace")


class WorkerTest(WorkerTestCase):

    def test_before_redis(self):
        srv = RedisServer(self)  # not started yet
        w = self.worker(srv, self.plugin_dir("hello"), wait=False)
        w.wait_log(r"Redis at .* is unreachable .*retrying", 10)
        time.sleep(3)
        self.assertTrue(w.alive(), "the worker waits for Redis instead of exiting\n" + w.tail())
        srv.start()
        t0 = time.monotonic()
        self.wait_registered(w, srv, 20)
        log("registered %.1f s after Redis started", time.monotonic() - t0)
        w.wait_log(r"Redis at .* is back", 5)
        app = self.celery(srv)
        r = app.send_task("hello.echo", args=["late redis"])
        self.assertEqual(r.get(timeout=20), ["late redis"])

    def test_evicting_policy_refused(self):
        srv = self.redis(extra=["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
        c = srv.client()
        app = self.celery(srv)
        r = app.send_task("hello.echo", args=[1])
        w = self.worker(srv, self.plugin_dir("hello"), wait=False)
        rc = w.wait(30)
        text = w.text()
        log("exit %d\n%s", rc, text)
        self.assertNotEqual(rc, 0)
        self.assertRegex(text, r"maxmemory-policy")
        self.assertRegex(text, r"allkeys-lru")
        self.assertRegex(text, r"--allow-evicting-redis")
        # it took nothing
        self.assertEqual(c.llen("celery"), 1)
        self.assertIsNone(self.meta(c, r.id))
        self.assertEqual(self.inflight(c), {})
        self.assert_no_leftovers("the refusal")

    def test_evicting_policy_allowed(self):
        srv = self.redis(extra=["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
        w = self.worker(srv, self.plugin_dir("hello"), args=["--allow-evicting-redis"])
        app = self.celery(srv)
        r = app.send_task("hello.echo", args=["evicting"])
        self.assertEqual(r.get(timeout=20), ["evicting"])
        w.wait_log(r"maxmemory-policy is allkeys-lru", 1)
        self.assertTrue(w.alive())

    def test_embedded(self):
        rt = os.path.join(self.tmp, "rt")
        w = self.worker(None, self.plugin_dir("hello"), config={"runtime_dir": rt}, wait=False,
                        env={"XDG_RUNTIME_DIR": self.tmp})
        m = w.wait_log(r'producers use broker_url = "([^"]+)"', 30)
        url = m.group(1)
        log("printed URL: %s", url)
        self.assertEqual(url, "redis+socket://" + os.path.join(rt, "redis.sock"))
        app = Celery("embedded", broker=url, backend=url, set_as_current=False)
        self.apps.append(app)
        r = app.send_task("hello.echo", args=["embedded"])
        self.assertEqual(r.get(timeout=30), ["embedded"])
        c = redis.Redis(unix_socket_path=os.path.join(rt, "redis.sock"))
        self.assertEqual(c.config_get("appendonly")["appendonly"], "yes")
        self.assertEqual(c.config_get("maxmemory-policy")["maxmemory-policy"], "noeviction")
        c.close()
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(30), 0)
        self.assert_no_leftovers("the worker with its embedded redis-server")

    # --- auth -------------------------------------------------------------------

    def auth_redis(self):
        port = free_port()
        srv = self.redis(port=port, extra=["--requirepass", PW])
        srv.tcp = "redis://127.0.0.1:%d/0" % port
        srv.tcp_pw = "redis://:%s@127.0.0.1:%d/0" % (PW_URL, port)
        return srv

    def check_serves(self, srv, w):
        self.wait_registered(w, srv)
        self.assertNotIn(PW, cmdline(w.pid))
        app = self.celery(srv, url=srv.tcp_pw)
        r = app.send_task("hello.echo", args=["authed"])
        self.assertEqual(r.get(timeout=20), ["authed"])

    def test_auth_env_password(self):
        srv = self.auth_redis()
        plugins = self.plugin_dir("hello")
        w = self.worker(srv.tcp, plugins, env={"KILN_REDIS_PASSWORD": PW}, wait=False)
        self.check_serves(srv, w)
        # a wrong one is a configuration error, not an outage: the worker says
        # so (naming the credentials, never the password) and exits non-zero
        # instead of retrying forever
        bad = self.worker(srv.tcp, plugins, env={"KILN_REDIS_PASSWORD": "bad-pass-7781"},
                          wait=False, name="worker-badpw")
        self.assertNotEqual(bad.wait(20), 0)
        self.assertRegex(bad.text(), r"refused kiln's credentials \(WRONGPASS")
        self.assertNotIn(PW, bad.text())
        self.assertNotIn("bad-pass-7781", bad.text())

    def test_separate_result_backend(self):
        """--result-backend: results go to the other Redis, written there before
        the message leaves the broker's in-flight hash; nothing lands on the broker."""
        broker, backend = self.redis(), self.redis(name="results")
        self.worker(broker, self.plugin_dir("hello"), args=["--result-backend", backend.url])
        from celery import Celery
        app = Celery("kilntests-split", broker=broker.url, backend=backend.url,
                     set_as_current=False)
        r = app.send_task("hello.echo", args=["split"])
        self.assertEqual(r.get(timeout=20), ["split"])
        with self.assertRaisesRegex(ValueError, "boom"):
            app.send_task("hello.fail", args=["boom"]).get(timeout=20)
        self.assertTrue(backend.client().exists("celery-task-meta-" + r.id))
        self.assertFalse(broker.client().keys("celery-task-meta-*"))
        wait_until(lambda: not any(broker.client().hlen(k)
                                   for k in broker.client().keys("kiln:inflight:*")),
                   5, "in-flight entries acked on the broker")

    def test_auth_broker_url_env(self):
        srv = self.auth_redis()
        w = self.worker(None, self.plugin_dir("hello"), env={"KILN_BROKER_URL": srv.tcp_pw},
                        wait=False)
        self.check_serves(srv, w)
        self.assertNotIn(PW, w.text(), "the password is never logged")

    def test_auth_acl_user(self):
        srv = self.auth_redis()
        c = srv.client()
        pw2 = "acl-pass-\u00e7"
        c.acl_setuser("kilnuser", enabled=True, passwords=["+" + pw2], keys=["*"],
                      channels=["*"], commands=["+@all"])
        pwfile = os.path.join(self.tmp, "redis-password")
        with open(pwfile, "w") as f:
            f.write(pw2 + "\n")
        os.chmod(pwfile, 0o600)
        w = self.worker(None, self.plugin_dir("hello"),
                        config={"password_file": pwfile},
                        env={"KILN_BROKER_URL": srv.tcp.replace("redis://", "redis://kilnuser@")},
                        wait=False)
        self.check_serves(srv, w)
        users = {cl["user"] for cl in c.client_list() if cl.get("cmd") != "client|list"}
        log("connected users: %r", users)
        self.assertIn("kilnuser", users)
        self.assertNotIn(pw2, w.text())

    def test_auth_argv_refused(self):
        srv = self.auth_redis()
        t0 = time.monotonic()
        w = self.worker(srv.tcp_pw, self.plugin_dir("hello"), wait=False)
        rc = w.wait(20)
        text = w.text()
        log("exit %d after %.2f s:\n%s", rc, time.monotonic() - t0, text)
        self.assertEqual(rc, 2, "a usage error")
        self.assertRegex(text, r"(?i)password")
        self.assertRegex(text, r"KILN_BROKER_URL|KILN_REDIS_PASSWORD")
        self.assertNotIn(PW, text)
        self.assertNotIn(PW_URL, text)
        self.assert_no_leftovers("the refusal")
        clients = [cl for cl in srv.client().client_list() if cl.get("cmd") != "client|list"]
        self.assertEqual(clients, [], "it never connected")


if __name__ == "__main__":
    main()
