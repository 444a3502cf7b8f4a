"""Resolve the master's configuration: defaults < config file < SHMCHANNELS_CMD_ARGS < command line.

Everything here raises :class:`ConfigError` (one line naming the key and the source)
and never exits: ``cli.py`` is the only place that turns an error into an exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import types
from dataclasses import dataclass, field
from typing import Any, Sequence

from ._settings import ALIASES, SETTINGS, SETTINGS_BY_NAME, ConfigError, Setting

__all__ = ["Config", "DEFAULT_CONFIG_FILE", "ENV_ARGS", "build_parser", "load_config", "load_file"]

#: Read from the working directory when present and no ``-c`` is given (gunicorn reads
#: ``./gunicorn.conf.py`` the same way).
DEFAULT_CONFIG_FILE = "shmchannels.conf.py"
#: Extra command-line arguments taken from the environment (gunicorn's GUNICORN_CMD_ARGS).
ENV_ARGS = "SHMCHANNELS_CMD_ARGS"


@dataclass
class Config:
    """The resolved settings: one attribute per entry of ``SETTINGS``.

    Attributes:
        values: setting name -> typed value.
        sources: setting name -> where the value came from ("default", a path, ...).
        config_file: the config file read, or None.
        check_config: ``--check-config`` was given.
        print_config: ``--print-config`` was given.
        argv: the command-line arguments, kept so SIGHUP re-reads with the same ones.
    """

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    config_file: str | None = None
    check_config: bool = False
    print_config: bool = False
    argv: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)

    def hook(self, name: str) -> Any:
        """Return the hook function named ``name`` or None."""
        return self.values.get(name)

    @property
    def settings_module(self) -> str | None:
        """The Django settings module: the setting, else the environment."""
        return self.values.get("django_settings") or os.environ.get("DJANGO_SETTINGS_MODULE") or None

    def render(self) -> str:
        """Return ``name = value`` lines, for ``--print-config``."""
        lines = []
        for setting in SETTINGS:
            value = self.values[setting.name]
            shown = getattr(value, "__qualname__", repr(value)) if setting.kind == "hook" and value else repr(value)
            lines.append(f"{setting.name:<26} = {shown}")
        return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse, but errors become ConfigError (one line, exit 1 in cli.py)."""

    source = "the command line"

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ConfigError(None, self.source, message)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``shmchannels`` argument parser from the settings table.

    Every option defaults to "not given" (argparse.SUPPRESS) so precedence can be
    decided afterwards; values are kept as strings and validated by the table.
    """
    parser = _Parser(
        prog="shmchannels",
        description="Run a Django Channels 1.x project: interface servers + Django workers "
                    "over a shared-memory channel layer.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("-c", "--config", metavar="CONFIG",
                        help=f"Python config file (default: ./{DEFAULT_CONFIG_FILE} when present).")
    parser.add_argument("--check-config", action="store_true",
                        help="Load the configuration and the settings module, then exit 0 (or 1 on error).")
    parser.add_argument("--print-config", action="store_true", help="Print the resolved settings and exit.")
    for setting in SETTINGS:
        if not setting.flags:
            continue
        kwargs: dict[str, Any] = {"dest": setting.name, "help": setting.help.replace("%", "%%")}
        if setting.kind == "flag":
            kwargs["action"] = "store_const"
            kwargs["const"] = True
        elif setting.kind == "append":
            kwargs["action"] = "append"
            kwargs["metavar"] = setting.metavar
        else:
            kwargs["metavar"] = setting.metavar
        parser.add_argument(*setting.flags, **kwargs)
    parser.add_argument("positional_settings", nargs="?", metavar="DJANGO_SETTINGS_MODULE",
                        help="The project's Django settings module (same as --django-settings).")
    return parser


def _is_ignorable(name: str, value: Any) -> bool:
    # The file is plain Python: imports and private helpers are allowed.
    return name.startswith("_") or isinstance(value, types.ModuleType)


def load_file(path: str) -> dict[str, Any]:
    """Execute a config file and return its settings, validated.

    Args:
        path: the file; a Python file whose top-level names are settings.

    Returns:
        setting name -> typed value, for the names the file sets.

    Raises:
        ConfigError: the file is missing, does not run, sets an unknown name or a bad value.
    """
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        raise ConfigError(None, path, f"cannot read config file: {exc.strerror}") from None
    namespace: dict[str, Any] = {"__file__": path, "__name__": "__config__"}
    try:
        code = compile(source, path, "exec")
        exec(code, namespace)  # noqa: S102 - a config file is code by design, as in gunicorn
    except SyntaxError as exc:
        raise ConfigError(None, path, f"syntax error on line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # any error raised by the user's file is reported in one line
        raise ConfigError(None, path, f"error while running the config file: {type(exc).__name__}: {exc}") from None
    values: dict[str, Any] = {}
    for name, value in namespace.items():
        if _is_ignorable(name, value):
            continue
        setting = SETTINGS_BY_NAME.get(ALIASES.get(name, name))
        if setting is None:
            raise ConfigError(name, path, "unknown setting (prefix private helpers with '_')")
        if setting.name in values:
            raise ConfigError(name, path, f"sets {setting.name} a second time (under its other name)")
        values[setting.name] = setting.validate(value, name, path)
    return values


def _from_namespace(namespace: argparse.Namespace, source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    given = vars(namespace)
    for setting in SETTINGS:
        if setting.name in given:
            values[setting.name] = setting.validate(given[setting.name], setting.name, source)
    if given.get("positional_settings"):
        values["django_settings"] = SETTINGS_BY_NAME["django_settings"].validate(
            given["positional_settings"], "django_settings", source)
    return values


def _parse(argv: Sequence[str], source: str) -> argparse.Namespace:
    parser = build_parser()
    parser.source = source  # type: ignore[attr-defined]
    return parser.parse_args(list(argv))


def load_config(argv: Sequence[str], environ: dict[str, str] | None = None, cwd: str | None = None) -> Config:
    """Resolve the configuration from the command line, the environment and the config file.

    Args:
        argv: command-line arguments (without the program name).
        environ: environment to read ``SHMCHANNELS_CMD_ARGS`` from (default os.environ).
        cwd: directory searched for ``shmchannels.conf.py`` (default the working directory).

    Returns:
        The Config.

    Raises:
        ConfigError: any bad value, unknown name, unreadable file or bad argument.
    """
    environ = os.environ if environ is None else environ
    cli = _parse(argv, "the command line")
    env_text = environ.get(ENV_ARGS, "")
    try:
        env_argv = shlex.split(env_text)
    except ValueError as exc:
        raise ConfigError(None, ENV_ARGS, f"cannot split: {exc}") from None
    env = _parse(env_argv, ENV_ARGS)

    config_file = getattr(cli, "config", None) or getattr(env, "config", None)
    if config_file is None:
        candidate = os.path.join(cwd or os.getcwd(), DEFAULT_CONFIG_FILE)
        if os.path.exists(candidate):
            config_file = candidate
    elif not os.path.exists(config_file):
        raise ConfigError(None, config_file, "config file not found")

    config = Config(config_file=os.path.abspath(config_file) if config_file else None, argv=list(argv))
    for setting in SETTINGS:
        config.values[setting.name] = _copy_default(setting)
        config.sources[setting.name] = "default"
    layers = [(config_file, load_file(config_file))] if config_file else []
    layers += [(ENV_ARGS, _from_namespace(env, ENV_ARGS)), ("the command line", _from_namespace(cli, "the command line"))]
    for source, values in layers:
        for name, value in values.items():
            config.values[name] = value
            config.sources[name] = source  # type: ignore[assignment]
    if config.interfaces == 0 and config.workers == 0:
        raise ConfigError("workers", config.sources["workers"], "interfaces and workers cannot both be 0")
    config.check_config = bool(getattr(cli, "check_config", False) or getattr(env, "check_config", False))
    config.print_config = bool(getattr(cli, "print_config", False) or getattr(env, "print_config", False))
    return config


def _copy_default(setting: Setting) -> Any:
    default = setting.default
    return list(default) if isinstance(default, list) else default
