#!/usr/bin/python3
"""A plain Celery client talking to `kiln worker`: the Python side does not change.

    python3 examples/celery/demo.py BROKER_URL

Sends tasks with Celery's own send_task and reads Celery's own results:
a value, an exception, and a hostile task that kiln contains (its child dies
at the memory cap, it is retried, then dead-lettered; the worker goes on).
"""
import sys
import time

from celery import Celery

url = sys.argv[1]
app = Celery("demo", broker=url, backend=url)
app.conf.broker_connection_retry_on_startup = False


def show(what, fn):
    t = time.time()
    try:
        value = fn()
        print(f"  {what}: returned {value!r} ({time.time() - t:.2f} s)")
    except Exception as e:  # the demo prints whatever Celery raises
        print(f"  {what}: raised {type(e).__name__}: {e} ({time.time() - t:.2f} s)")


print("Celery client -> kiln worker")
show("hello.echo([1, 'two'])", lambda: app.send_task("hello.echo", args=[1, "two"]).get(timeout=30))
show("hello.fail(['no such user'])",
     lambda: app.send_task("hello.fail", args=["no such user"]).get(timeout=30))
rs = [app.send_task("hello.echo", args=[i]) for i in range(1000)]
show("1000 x hello.echo", lambda: sum(r.get(timeout=60)[0] for r in rs))
show("malloc_bomb.run (a handler that touches 8 GB)",
     lambda: app.send_task("malloc_bomb.run").get(timeout=120))
show("hello.echo(['still here'])",
     lambda: app.send_task("hello.echo", args=["still here"]).get(timeout=30))
