"""``shmchannels``: the command line of the master (the only place that picks exit codes).

Order of start-up (operations.md §3.3): process title, configuration, systemd notify
socket taken out of the environment, ``on_starting``, pidfile, sockets (systemd's or
bound here), the channel layer (the shm segment is created here, before any fork), then
the arbiter's loop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, Callable, Sequence

from . import _process
from ._compat_gunicorn import Pidfile
from ._config import Config, load_config
from ._layer import LayerError, build_layer, layer_entry, project_name
from ._settings import ConfigError
from ._sockets import BindError, Listener, bind_all, close_all, describe
from ._systemd import Notifier, inherited_sockets
from .arbiter import Arbiter, ChildSpec

__all__ = ["main"]

log = logging.getLogger("shmchannels.master")
_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


def _error(message: str) -> int:
    print(f"shmchannels: error: {message}", file=sys.stderr, flush=True)
    return 1


def _apply_environment(config: Config) -> None:
    for item in config.raw_env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    if config.django_settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = config.django_settings


def setup_logging(config: Config) -> None:
    """Send the master's log to ``errorlog`` (stderr for ``-``) at ``loglevel``."""
    logger = logging.getLogger("shmchannels")
    handler: logging.Handler
    # The new handler first: if the file cannot be opened, the old one keeps logging.
    if config.errorlog == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(config.errorlog)
    handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S %z"))
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(config.loglevel.upper())
    logger.propagate = False


def _check(config: Config) -> int:
    entry = layer_entry(config.settings_module, config.channel_layer)
    backend = entry.get("BACKEND", "")
    if backend in ("asgiref.inmemory.ChannelLayer", "channels.layers.inmemory.InMemoryChannelLayer"):
        raise LayerError(f"CHANNEL_LAYERS[{config.channel_layer!r}] is the in-memory layer, which cannot "
                         "span processes; use 'shmlayer.ShmChannelLayer' (or Redis)")
    print(f"shmchannels: configuration OK ({config.config_file or 'no config file'}; "
          f"settings {config.settings_module}; layer {backend})")
    return 0


def _listeners(config: Config) -> tuple[list[Listener], bool]:
    if config.interfaces == 0:
        log.info("No interface processes (interfaces = 0): not listening on any socket")
        return [], True  # True: nothing to rebind on SIGHUP either
    inherited = inherited_sockets()
    if inherited:
        if config.sources.get("bind") != "default":
            log.warning("Socket activation: ignoring bind = %r", config.bind)
        listeners = [Listener(sock, name, from_systemd=True) for sock, name in inherited]
        for listener in listeners:
            log.info("Listening on systemd socket %s (%s)", describe(listener.sock), listener.address)
        return listeners, True
    listeners = bind_all(list(config.bind), config.umask)
    for listener in listeners:
        log.info("Listening at %s", describe(listener.sock))
    return listeners, False


#: Set by ``manage.py runserver`` to its own pid: the master then stops (SIGTERM) when
#: runserver dies, even by SIGKILL, instead of serving on as an orphan.
PARENT_ENV = "SHMCHANNELS_PARENT_PID"


def _bind_to_parent() -> bool:
    parent = os.environ.pop(PARENT_ENV, None)
    if not parent:
        return True
    _process.set_parent_death_signal(signal.SIGTERM)
    return parent == str(os.getppid())  # the parent may have died before prctl


def _hand_over_segment(layer: Any, config: Config) -> None:
    """Give the shm segment to ``user``/``group`` so children that drop privileges can attach.

    The master creates the segment (as whoever started it) before forking; children
    switching to ``user`` would then get EACCES on a 0600 root-owned file.
    """
    name = getattr(layer, "segment_name", None)
    if not name or (config.user is None and config.group is None):
        return
    uid, gid = _process.lookup_ids(config.user, config.group)
    path = os.path.join("/dev/shm", name)
    if os.path.exists(path):
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
        log.info("Shared-memory segment %s handed to %s:%s", path, config.user or "-", config.group or "-")


def main(argv: Sequence[str] | None = None,
         specs_factory: Callable[[Any], Sequence[ChildSpec]] | None = None,
         layer_loader: Callable[[Config], Any] | None = None) -> int:
    """Run the ``shmchannels`` command.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).
        specs_factory: the ChildSpec table builder (tests plug in fake targets).
        layer_loader: builds the channel layer in the master (tests may return None).

    Returns:
        The exit code: 0 after a requested stop, 1 on a configuration error or when the
        project cannot boot.
    """
    # setproctitle first: it must see the environment before anything changes it.
    _process.set_title("shmchannels: master")
    argv = list(sys.argv[1:] if argv is None else argv)
    notifier = Notifier()
    if not _bind_to_parent():
        return _error("the process that started this master (SHMCHANNELS_PARENT_PID) is gone")
    try:
        config = load_config(argv)
    except ConfigError as exc:
        return _error(str(exc))
    if config.print_config:
        try:
            print(config.render(), flush=True)
        except BrokenPipeError:  # `shmchannels --print-config | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    _apply_environment(config)
    if config.check_config:
        try:
            _process.lookup_ids(config.user, config.group)
            return _check(config)
        except LayerError as exc:
            return _error(str(exc))
        except KeyError as exc:
            return _error(f"user/group in {config.sources['user']}: {exc.args[0]}")
    try:
        setup_logging(config)
    except OSError as exc:
        return _error(f"errorlog in {config.sources['errorlog']}: cannot open {config.errorlog}: {exc.strerror}")
    if specs_factory is None:
        from ._targets import build_specs
        specs_factory = build_specs
    if layer_loader is None:
        layer_loader = lambda cfg: build_layer(cfg.settings_module, cfg.channel_layer)  # noqa: E731
    name = config.proc_name or project_name(config.settings_module)

    def reload_config() -> Config:
        new = load_config(argv)
        # raw_env entries dropped from the config leave the environment (gunicorn does the same).
        for item in arbiter.config.raw_env:
            os.environ.pop(item.partition("=")[0], None)
        _apply_environment(new)
        setup_logging(new)
        return new

    arbiter = Arbiter(config, specs_factory, listeners=[], reload_config=reload_config,
                      notifier=notifier, name=name)
    arbiter.run_hook("on_starting", arbiter)
    pidfile = None
    try:
        _process.lookup_ids(config.user, config.group)
        if config.pidfile:
            pidfile = Pidfile(config.pidfile)
            pidfile.create(os.getpid())
        listeners, from_systemd = _listeners(config)
        arbiter.listeners = listeners
        if not from_systemd:
            arbiter.rebind = lambda cfg: bind_all(list(cfg.bind), cfg.umask)
        arbiter.layer = layer_loader(config)
        _hand_over_segment(arbiter.layer, config)
    except (BindError, LayerError, KeyError, RuntimeError, OSError) as exc:
        # Nothing forked yet: free what was set up (a segment that could not be handed over too).
        close_all(arbiter.listeners)
        arbiter.release_layer()
        if pidfile is not None:
            pidfile.unlink()
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return _error(message)
    try:
        return arbiter.run()
    finally:
        if pidfile is not None:
            pidfile.unlink()
