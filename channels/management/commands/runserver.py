"""``manage.py runserver``: the whole shmchannels stack for development, in one command.

::

    manage.py runserver [addrport] [--noreload] [--noworker] [--threads N] [--workers N]
                        [--http_timeout S] [--websocket_handshake_timeout S] [-6]

What runs depends on the layer of ``CHANNEL_LAYERS["default"]`` (``--layer``):

- **in-memory layer**: one process. The interface server runs in this process and the
  worker as threads next to it (the layer cannot leave the process). Django's
  autoreloader restarts the process on a code change, as Django's runserver does.
- **shm layer** (the default with no ``CHANNEL_LAYERS``) **or Redis**: the ``shmchannels``
  master in a subprocess, with one interface process and ``--workers`` Django workers.
  The master never imports Django, so its workers load the project afresh: on a code
  change this process sends the master SIGHUP, a new worker generation boots and the old
  one retires, and open WebSockets stay connected. If the project fails to boot, the
  error is shown and the master is started again after the next change.
- ``--noworker``: only the interface server, in this process; run ``manage.py runworker``
  in other terminals. Not possible with the in-memory layer.

In DEBUG the default ``http.request`` consumer (``channels.handler.ViewConsumer``) serves
static files, as Django's runserver does.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.core.management.commands.runserver import Command as DjangoRunserver
from django.utils import autoreload

from channels import DEFAULT_CHANNEL_LAYER

_INMEMORY_BACKENDS = ("asgiref.inmemory.ChannelLayer", "channels.layers.inmemory.InMemoryChannelLayer")
#: Seconds the master subprocess gets to stop after Ctrl-C / SIGTERM before SIGKILL.
_STOP_GRACE = 10.0


class Command(DjangoRunserver):
    """Django's runserver, serving HTTP and WebSockets through the channel layer."""

    help = "Starts the shmchannels development server: an interface server plus Django workers."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--noworker", action="store_false", dest="run_worker", default=True,
                            help="Run only the interface server; start workers with 'manage.py runworker'.")
        parser.add_argument("--layer", dest="layer", default=DEFAULT_CHANNEL_LAYER,
                            help="Alias of the channel layer in CHANNEL_LAYERS (default: %(default)s).")
        parser.add_argument("--workers", dest="workers", type=int, default=1,
                            help="Worker processes with the shm or Redis layer (default: %(default)s).")
        parser.add_argument("--threads", dest="threads", type=int, default=4,
                            help="Worker threads (in-memory layer) or threads per worker process (default: 4, "
                                 "as Channels 1.x).")
        parser.add_argument("--http_timeout", dest="http_timeout", type=float, default=60.0,
                            help="Seconds an HTTP request waits for its response (default: %(default)s).")
        parser.add_argument("--websocket_handshake_timeout", dest="websocket_handshake_timeout", type=float,
                            default=5.0, help="Seconds a WebSocket handshake waits for the accept (default: 5).")

    # Django's handle() parses addrport into self.addr / self.port / self.use_ipv6, then
    # calls run(); everything after that is ours.
    def run(self, **options: Any) -> None:
        if options["workers"] < 1 or options["threads"] < 1:
            raise CommandError("--workers and --threads must be at least 1")
        entry = self._layer_entry(options["layer"])
        backend = entry.get("BACKEND", "shmlayer.ShmChannelLayer")
        in_process = backend in _INMEMORY_BACKENDS
        if in_process and not options["run_worker"]:
            raise CommandError("--noworker needs a layer other processes can reach (shm or Redis), "
                               "not the in-memory layer: a 'runworker' would never see a message.")
        if not options["run_worker"]:
            self._checks()
            self._banner(backend, options, "interface only: start workers with 'manage.py runworker'")
            self._run_interface_here(options)
        elif in_process:
            if options["use_reloader"]:
                autoreload.run_with_reloader(self._run_in_process, **options)
            else:
                self._run_in_process(**options)
        else:
            self._checks()
            self._banner(backend, options, f"1 interface + {options['workers']} worker process(es)")
            self._run_master(options)

    # -- helpers shared by the modes --------------------------------------------------------
    def _layer_entry(self, alias: str) -> dict[str, Any]:
        layers = getattr(settings, "CHANNEL_LAYERS", None)
        if layers is None:
            return {"BACKEND": "shmlayer.ShmChannelLayer", "ROUTING": []}
        if alias not in layers:
            raise CommandError(f"CHANNEL_LAYERS has no layer {alias!r}")
        return layers[alias]

    def _checks(self) -> None:
        self.stdout.write("Performing system checks...\n\n")
        self.check(display_num_errors=True)
        self.check_migrations()

    @property
    def _bind(self) -> str:
        return f"[{self.addr}]:{self.port}" if self.use_ipv6 else f"{self.addr}:{self.port}"

    def _banner(self, backend: str, options: dict[str, Any], mode: str) -> None:
        addr = f"[{self.addr}]" if self._raw_ipv6 else ("0.0.0.0" if self.addr == "0" else self.addr)
        self.stdout.write(
            f"{datetime.now().strftime('%B %d, %Y - %X')}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting shmchannels development server at http://{addr}:{self.port}/\n"
            f"Channel layer {options['layer']} ({backend}); {mode}\n"
            f"Quit the server with {'CTRL-BREAK' if sys.platform == 'win32' else 'CONTROL-C'}.\n"
        )
        self.stdout.flush()

    def _options(self, options: dict[str, Any]) -> Any:
        from interface import Options

        return Options(http_timeout=options["http_timeout"],
                       websocket_connect_timeout=options["websocket_handshake_timeout"],
                       root_path=getattr(settings, "FORCE_SCRIPT_NAME", None) or "",
                       ws_protocols=tuple(getattr(settings, "CHANNELS_WS_PROTOCOLS", None) or ()),
                       access_log="-", graceful_timeout=5)

    def _listen(self) -> Any:
        from supervisor._sockets import BindError, bind_one

        try:
            return bind_one(self._bind).sock
        except BindError as exc:
            raise CommandError(f"Error: {exc}") from None

    # -- in-memory: one process, worker threads + the interface ---------------------------------
    def _run_in_process(self, **options: Any) -> None:
        from channels.asgi import channel_layers
        from interface import InterfaceServer
        from worker import Worker

        autoreload.raise_last_exception()
        self._checks()
        wrapper = channel_layers[options["layer"]]
        wrapper.router.check_default()
        self._banner(type(wrapper.channel_layer).__module__ + "." + type(wrapper.channel_layer).__name__,
                     options, f"in-process: interface + {options['threads']} worker thread(s)")
        sock = self._listen()
        worker = Worker(wrapper, threads=options["threads"], signal_handlers=False,
                        verbosity=max(options.get("verbosity", 1), 1))
        threading.Thread(target=worker.run, name="channels-worker", daemon=True).start()
        server = InterfaceServer(wrapper.channel_layer, [sock], self._options(options))
        main = threading.current_thread() is threading.main_thread()
        try:
            asyncio.run(server.serve(signal_handlers=main))
        except KeyboardInterrupt:
            pass
        finally:
            worker.stop()

    # -- --noworker: the interface server in this process --------------------------------------
    def _run_interface_here(self, options: dict[str, Any]) -> None:
        from channels.asgi import channel_layers
        from interface import run_interface

        layer = channel_layers[options["layer"]].channel_layer
        sock = self._listen()
        try:
            code = run_interface(layer, [sock], self._options(options))
        except KeyboardInterrupt:
            code = 0
        if code:
            sys.exit(code)

    # -- shm / Redis: the shmchannels master in a subprocess ------------------------------------
    def _master_command(self, options: dict[str, Any]) -> list[str]:
        return [
            sys.executable, "-m", "supervisor",
            # An empty config file: a production ./shmchannels.conf.py must not apply here.
            "-c", os.devnull,
            "-b", self._bind, "--interfaces", "1", "-w", str(options["workers"]),
            "--threads", str(options["threads"]), "--layer", options["layer"],
            "--http-timeout", str(options["http_timeout"]),
            "--websocket-connect-timeout", str(options["websocket_handshake_timeout"]),
            "--graceful-timeout", "5", "--access-logfile", "-",
            "--log-level", "debug" if options.get("verbosity", 1) > 1 else "info",
            settings.SETTINGS_MODULE,
        ]

    def _watch_project(self, alias: str) -> threading.Event:
        """Start Django's file watcher in a thread; return the event it sets on a change."""
        changed = threading.Event()

        def on_change(sender: Any, file_path: Any, **kwargs: Any) -> bool:
            self.stdout.write(f"{file_path} changed, reloading the workers.\n")
            changed.set()
            return True  # handled: Django must not restart this process

        # Import the routing so its consumers' modules are watched too (Django watches
        # the modules imported in this process); a broken import is reported by the workers.
        routing = self._layer_entry(alias).get("ROUTING")
        if isinstance(routing, str) and "." in routing:
            try:
                importlib.import_module(routing.rsplit(".", 1)[0])
            except Exception as exc:
                self.stderr.write(f"Cannot import the routing {routing}: {type(exc).__name__}: {exc}\n")
                filename = getattr(exc, "filename", None)
                if filename:
                    autoreload._error_files.append(filename)
        autoreload.file_changed.connect(on_change, weak=False)
        reloader = autoreload.get_reloader()
        threading.Thread(target=reloader.run, args=(threading.main_thread(),), name="django-autoreload",
                         daemon=True).start()
        return changed

    def _run_master(self, options: dict[str, Any]) -> None:
        env = dict(os.environ)
        env.pop("SHMCHANNELS_CMD_ARGS", None)
        env["DJANGO_SETTINGS_MODULE"] = settings.SETTINGS_MODULE
        # The master stops by itself if this process dies, even by SIGKILL.
        env["SHMCHANNELS_PARENT_PID"] = str(os.getpid())
        env.setdefault("PYTHONUNBUFFERED", "1")
        changed = self._watch_project(options["layer"]) if options["use_reloader"] else None
        stopping: list[int] = []
        previous = {sig: signal.signal(sig, lambda signum, frame: stopping.append(signum))
                    for sig in (signal.SIGTERM, signal.SIGHUP)}
        proc = None
        try:
            while not stopping:
                proc = subprocess.Popen(self._master_command(options), env=env)
                while proc.poll() is None and not stopping:
                    time.sleep(0.2)
                    if changed is not None and changed.is_set():
                        changed.clear()
                        time.sleep(0.2)  # editors write in bursts: one reload for all of it
                        changed.clear()
                        proc.send_signal(signal.SIGHUP)
                if stopping or changed is None:
                    break
                self.stderr.write(f"The server exited (code {proc.returncode}); it restarts after the next "
                                  "code change.\n")
                changed.clear()
                while not changed.wait(0.2):
                    if stopping:
                        break
                changed.clear()
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if proc is not None:
                self._stop_master(proc)
        if proc is not None and proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT) and not stopping:
            sys.exit(proc.returncode if proc.returncode and proc.returncode > 0 else 1)

    def _stop_master(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            # Ctrl-C reached the master too (same process group); otherwise stop it here.
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
