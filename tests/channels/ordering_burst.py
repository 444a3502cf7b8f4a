"""Run by test_ordering_workers.py in a subprocess: real worker threads, a real sqlite file.

Several sockets connect to the tutorial's /ordering/ section and each sends a burst of
frames back to back; a Worker with two threads consumes them. Every socket is in
Group("chat"), so each one sees every socket's counter lines. Prints a JSON report.
"""

import json
import os
import sys
import threading
import time

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from channels.asgi import channel_layers  # noqa: E402
from channels.layers.inmemory import InMemoryChannelLayer  # noqa: E402
from worker import Worker  # noqa: E402

SOCKETS = int(sys.argv[1])
FRAMES = int(sys.argv[2])


def main():
    import channels.layers.inmemory

    channels.layers.inmemory.BLOCK_TIMEOUT = 0.1  # the worker notices stop() sooner
    started = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    # Built by the loader from the test settings: the in-memory layer with the default
    # capacities and the tutorial routing.
    wrapper = channel_layers["default"]
    assert isinstance(wrapper.channel_layer, InMemoryChannelLayer)
    wrapper.router.check_default()
    layer = wrapper.channel_layer
    worker = Worker(wrapper, threads=int(os.environ.get("OB_THREADS", "2")), signal_handlers=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    prefixes = [f"t.burst{n}!" for n in range(SOCKETS)]
    got = {prefix: [] for prefix in prefixes}

    def collect():
        for prefix in prefixes:
            while True:
                channel, content = layer.receive([prefix], block=False)
                if channel is None:
                    break
                got[prefix].append(content)

    for n, prefix in enumerate(prefixes):
        layer.send("websocket.connect", {
            "reply_channel": prefix + "c", "path": "/ordering/", "order": 0, "headers": [],
            "query_string": b"", "client": ["127.0.0.1", 1000 + n], "server": ["127.0.0.1", 80],
        })
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(got[p] for p in prefixes):
        collect()
        time.sleep(0.01)
    print(f"connected after {time.monotonic() - started:.2f}s", file=sys.stderr)
    accepted = all(got[p][:1] == [{"accept": True}] for p in prefixes)
    for order in range(1, FRAMES + 1):
        for n, prefix in enumerate(prefixes):
            layer.send("websocket.receive", {
                "reply_channel": prefix + "c", "path": "/ordering/", "order": order,
                "text": f"s{n}-{order}", "bytes": None,
            })
    want = 1 + SOCKETS * FRAMES
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(len(got[p]) >= want for p in prefixes):
        collect()
        time.sleep(0.005)
    print(f"burst done after {time.monotonic() - started:.2f}s", file=sys.stderr)
    worker.stop()
    thread.join(10)
    report = {"accepted": accepted, "lines": {p: [m.get("text") for m in got[p][1:]] for p in prefixes}}
    print(json.dumps(report))


main()
