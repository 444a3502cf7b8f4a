"""The settings of the ``shmchannels`` master, each defined once.

One table (:data:`SETTINGS`) gives every setting its name, command-line flag, type,
default and help text. Three things are generated from it, so they cannot drift apart:

- the argparse parser of ``shmchannels`` (``supervisor/_config.py``),
- the config-file loader (a Python file whose top-level names are settings, as in
  gunicorn), and
- the configuration reference of the README (``python -m supervisor.settings_doc``).

Names follow gunicorn where the meaning matches (``bind``, ``workers``, ``timeout``,
``graceful_timeout``, ``pidfile``, ``proc_name``, ``raw_env``, the server hooks) so a
gunicorn user's config file mostly reads the same.

Validators turn a raw value (a string from the command line, or any Python object from
the config file) into the typed value, or raise :class:`ConfigError` naming the key and
where the value came from.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ._compat_gunicorn import parse_address

__all__ = ["ALIASES", "ConfigError", "SETTINGS", "SETTINGS_BY_NAME", "Setting", "render_markdown"]


class ConfigError(Exception):
    """A setting has a bad value, or a config file cannot be read.

    ``str(error)`` is the whole user-facing message: one line naming the key and where
    the value came from (a file path, ``the command line`` or ``SHMCHANNELS_CMD_ARGS``).
    """

    def __init__(self, key: str | None, source: str, message: str) -> None:
        self.key = key
        self.source = source
        self.message = message
        where = f"{key} in {source}" if key else source
        super().__init__(f"{where}: {message}")


Validator = Callable[[Any, str, str], Any]


def _int(minimum: int) -> Validator:
    def validate(value: Any, key: str, source: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(key, source, f"must be an integer, not {type(value).__name__} {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(key, source, f"must be an integer, not {value!r}") from None
        if number < minimum:
            raise ConfigError(key, source, f"must be >= {minimum}, not {number}")
        return number

    return validate


def _float(allow_none: bool = False, minimum: float = 0.0, positive: bool = True) -> Validator:
    def validate(value: Any, key: str, source: str) -> float | None:
        if value is None and allow_none:
            return None
        if isinstance(value, str) and allow_none and value.lower() == "none":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(key, source, f"must be a number, not {type(value).__name__} {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(key, source, f"must be a number, not {value!r}") from None
        if allow_none and number == -1:
            return number
        if positive and number <= 0:
            raise ConfigError(key, source, f"must be a positive number of seconds, not {number:g}")
        if number < minimum:
            raise ConfigError(key, source, f"must be >= {minimum:g}, not {number:g}")
        return number

    return validate


def _bool(value: Any, key: str, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(key, source, f"must be True or False, not {value!r}")


def _str(allow_none: bool = True) -> Validator:
    def validate(value: Any, key: str, source: str) -> str | None:
        if value is None and allow_none:
            return None
        if not isinstance(value, str):
            raise ConfigError(key, source, f"must be a string, not {type(value).__name__} {value!r}")
        return value

    return validate


def _choice(*choices: str) -> Validator:
    def validate(value: Any, key: str, source: str) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            raise ConfigError(key, source, f"must be one of {', '.join(choices)}, not {value!r}")
        return value.lower()

    return validate


def _str_list(value: Any, key: str, source: str) -> list[str]:
    # A single string is accepted and split on commas (the command-line form of
    # forwarded_allow_ips); a list or tuple must hold strings.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ConfigError(key, source, f"must be a list of strings, not {value!r}")


def check_address(address: str, key: str = "bind", source: str = "the command line") -> str:
    """Validate one bind address and return it unchanged.

    Accepted: ``HOST:PORT`` (IPv6 as ``[::1]:8000``), ``unix:PATH``, ``fd://N``.

    Raises:
        ConfigError: the address cannot be parsed.
    """
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(key, source, f"bad address {address!r}: expected HOST:PORT, unix:PATH or fd://N")
    netloc = address[len("tcp://"):] if address.startswith("tcp://") else address
    if netloc.startswith("[") and "]" not in netloc:
        raise ConfigError(key, source, f"bad address {address!r}: missing ']' after the IPv6 host")
    if netloc.count(":") > 1 and not netloc.startswith(("[", "unix:", "fd://")):
        raise ConfigError(key, source, f"bad address {address!r}: write an IPv6 host as [::1]:8000")
    try:
        parsed = parse_address(address)
    except RuntimeError as exc:
        raise ConfigError(key, source, f"bad address {address!r}: {exc}") from None
    if isinstance(parsed, tuple):
        host, port = parsed
        if not 0 <= port <= 65535:
            raise ConfigError(key, source, f"bad address {address!r}: port {port} out of range")
        if not host:
            raise ConfigError(key, source, f"bad address {address!r}: missing host")
    elif isinstance(parsed, str) and not parsed:
        raise ConfigError(key, source, f"bad address {address!r}: empty unix socket path")
    elif isinstance(parsed, int) and parsed < 0:
        raise ConfigError(key, source, f"bad address {address!r}: negative file descriptor")
    return address


def _addresses(value: Any, key: str, source: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(key, source, f"must be a non-empty list of addresses, not {value!r}")
    return [check_address(item, key, source) for item in value]


def _raw_env(value: Any, key: str, source: str) -> list[str]:
    items = _str_list([value] if isinstance(value, str) else value, key, source)
    for item in items:
        name, sep, _ = item.partition("=")
        if not sep or not name:
            raise ConfigError(key, source, f"expected KEY=VALUE, not {item!r}")
    return items


def _umask(value: Any, key: str, source: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value, 0) if value.lower().startswith("0o") or value.startswith("0x") else int(value, 8)
        except ValueError:
            raise ConfigError(key, source, f"must be an octal number like 0o22, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ConfigError(key, source, f"must be a umask between 0 and 0o777, not {value!r}")
    return value


def _hook(arity: int) -> Validator:
    def validate(value: Any, key: str, source: str) -> Callable[..., Any] | None:
        if value is None:
            return None
        if not callable(value):
            raise ConfigError(key, source, f"must be a function, not {type(value).__name__}")
        try:
            params = inspect.signature(value).parameters.values()
        except (TypeError, ValueError):
            return value  # builtins without a signature: trust them, as gunicorn does
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required = [p for p in positional if p.default is p.empty]
        varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
        if len(required) > arity or (len(positional) < arity and not varargs):
            raise ConfigError(key, source, f"must take {arity} positional argument{'s' if arity > 1 else ''}")
        return value

    return validate


@dataclass(frozen=True)
class Setting:
    """One setting: how it is named, typed, defaulted and documented.

    Attributes:
        name: the config-file name (and attribute of :class:`supervisor._config.Config`).
        section: heading in the generated reference.
        validate: turns a raw value into the typed one, or raises ConfigError.
        default: the value when neither file nor command line sets it.
        help: one or two sentences for ``--help`` and the README.
        flags: command-line flags; empty for file-only settings (hooks).
        metavar: placeholder in ``--help``.
        kind: ``"value"``, ``"append"`` (repeatable flag), ``"flag"`` (store_true) or
            ``"hook"``.
        type_name: the type as written in the reference.
    """

    name: str
    section: str
    validate: Validator
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    kind: str = "value"
    type_name: str = "str"


def _s(name: str, section: str, flags: tuple[str, ...], validate: Validator, default: Any, type_name: str,
       help: str, *, metavar: str | None = None, kind: str = "value") -> Setting:
    return Setting(name=name, section=section, validate=validate, default=default, help=help, flags=flags,
                   metavar=metavar, kind=kind, type_name=type_name)


def _h(name: str, args: str, help: str) -> Setting:
    arity = len(args.split(","))
    return Setting(name=name, section="Server hooks", validate=_hook(arity), default=None,
                   help=f"`def {name}({args})`: {help}", kind="hook", type_name="function")


#: The table. Order is the order of ``--help``, ``--print-config`` and the reference.
SETTINGS: tuple[Setting, ...] = (
    _s("bind", "Sockets", ("-b", "--bind"), _addresses, ["127.0.0.1:8000"], "list of str",
       "Addresses to listen on: `HOST:PORT` (IPv6 as `[::1]:8000`), `unix:PATH` or `fd://N`. "
       "Repeat the flag for several. Ignored (with a warning) under systemd socket activation.",
       metavar="ADDRESS", kind="append"),
    _s("umask", "Sockets", ("--umask",), _umask, None, "octal int",
       "umask applied while binding unix sockets; None keeps the inherited one.", metavar="MASK"),
    _s("interfaces", "Processes", ("--interfaces",), _int(0), 1, "int",
       "Number of interface processes (HTTP + WebSocket servers) sharing the listening sockets. "
       "0 = a worker-only host (Redis layer): nothing is bound.", metavar="N"),
    _s("workers", "Processes", ("-w", "--workers"), _int(0), 2, "int",
       "Number of Django worker processes; 0 = an interface-only host (Redis layer). "
       "SIGTTIN/SIGTTOU add or remove one.", metavar="N"),
    _s("worker_threads", "Processes", ("--threads",), _int(1), 1, "int",
       "Consumer threads in each worker process.", metavar="N"),
    _s("max_messages", "Processes", ("--max-messages", "--max-requests"), _int(0), 0, "int",
       "A worker exits and is replaced after this many messages (0 = never); gunicorn's max_requests.",
       metavar="N"),
    _s("max_messages_jitter", "Processes", ("--max-messages-jitter", "--max-requests-jitter"), _int(0), 0, "int",
       "Random extra 0..N added to max_messages per worker, so workers do not restart together.",
       metavar="N"),
    _s("channel_layer", "Processes", ("--layer",), _str(False), "default", "str",
       "Alias in CHANNEL_LAYERS the processes use.", metavar="ALIAS"),
    _s("timeout", "Timeouts", ("-t", "--timeout"), _int(0), 30, "int",
       "A child that sends no heartbeat for this many seconds (a worker stuck in one message, an "
       "interface whose event loop is blocked) is killed with SIGABRT, then SIGKILL, and replaced. "
       "Also the time a child has to boot. 0 disables.", metavar="SECONDS"),
    _s("graceful_timeout", "Timeouts", ("--graceful-timeout",), _float(), 30.0, "float",
       "On SIGTERM (and for the old generation on SIGHUP), children get this long to finish, "
       "then SIGKILL. systemd's TimeoutStopSec must be larger.", metavar="SECONDS"),
    _s("http_timeout", "Timeouts", ("--http-timeout",), _float(), 120.0, "float",
       "Seconds an HTTP request waits for its response to start before a 503.", metavar="SECONDS"),
    _s("websocket_timeout", "Timeouts", ("--websocket-timeout",), _float(allow_none=True), None,
       "float or None", "Maximum WebSocket lifetime; None = the layer's group_expiry, -1 = unlimited.",
       metavar="SECONDS"),
    _s("websocket_connect_timeout", "Timeouts", ("--websocket-connect-timeout",), _float(), 5.0, "float",
       "Seconds a WebSocket handshake waits for the application's accept before a 403.",
       metavar="SECONDS"),
    _s("ping_interval", "Timeouts", ("--ping-interval",), _float(), 20.0, "float",
       "Idle seconds before the server pings a WebSocket client.", metavar="SECONDS"),
    _s("ping_timeout", "Timeouts", ("--ping-timeout",), _float(), 30.0, "float",
       "Seconds to wait for a pong before closing the WebSocket.", metavar="SECONDS"),
    _s("proxy_headers", "Proxies", ("--proxy-headers",), _bool, False, "bool",
       "Trust X-Forwarded-For/-Proto/-Port from peers listed in forwarded_allow_ips.", kind="flag"),
    _s("forwarded_allow_ips", "Proxies", ("--forwarded-allow-ips",), _str_list, ["127.0.0.1"],
       "list of str", "Peers whose proxy headers are trusted (comma-separated on the command line; `*` = all).",
       metavar="IPS"),
    _s("root_path", "Proxies", ("--root-path",), _str(False), "", "str",
       "ASGI root_path (SCRIPT_NAME) when mounted below a URL prefix.", metavar="PATH"),
    _s("accesslog", "Logging", ("--access-logfile",), _str(), None, "str or None",
       "Access log file of the interface processes; `-` = stdout; None = off.", metavar="FILE"),
    _s("errorlog", "Logging", ("--error-logfile", "--log-file"), _str(False), "-", "str",
       "The master's log file; `-` = stderr. Reopened on SIGUSR1.", metavar="FILE"),
    _s("loglevel", "Logging", ("--log-level",), _choice("debug", "info", "warning", "error", "critical"),
       "info", "str", "Log level: debug, info, warning, error or critical.", metavar="LEVEL"),
    _s("pidfile", "Process", ("-p", "--pid"), _str(), None, "str or None",
       "Write the master's pid to this file (removed at exit).", metavar="FILE"),
    _s("user", "Process", ("-u", "--user"), _str(), None, "str or None",
       "Children switch to this user (name or uid). Prefer User= in the systemd unit.", metavar="USER"),
    _s("group", "Process", ("-g", "--group"), _str(), None, "str or None",
       "Children switch to this group (name or gid).", metavar="GROUP"),
    _s("proc_name", "Process", ("-n", "--name"), _str(), None, "str or None",
       "Name in the process titles (`shmchannels: worker 2 [NAME]`); default: the settings package.",
       metavar="NAME"),
    _s("django_settings", "Process", ("--django-settings",), _str(), None, "str or None",
       "DJANGO_SETTINGS_MODULE of the project (also the positional argument; default: the environment).",
       metavar="MODULE"),
    _s("raw_env", "Process", ("-e", "--env"), _raw_env, [], "list of str",
       "Extra environment variables `KEY=VALUE` for the master and its children.", metavar="KEY=VALUE",
       kind="append"),
    _h("on_starting", "server", "in the master, before sockets are bound and children forked."),
    _h("when_ready", "server", "in the master, once an interface and a worker have booted "
       "(unlike gunicorn, where it runs before any worker)."),
    _h("on_reload", "server", "in the master on SIGHUP, after the config is re-read."),
    _h("post_fork", "server, child", "in a new child right after fork; `child.kind` is "
       "`interface` or `worker`."),
    _h("child_exit", "server, child", "in the master after a child has been reaped."),
    _h("worker_exit", "server, child", "in a child just before it exits."),
    _h("on_exit", "server", "in the master just before it exits."),
)

SETTINGS_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}

#: gunicorn's names for the same settings, accepted in config files (their flags are in
#: the table): a gunicorn.conf.py with ``threads`` or ``max_requests`` keeps working.
ALIASES: dict[str, str] = {
    "threads": "worker_threads",
    "max_requests": "max_messages",
    "max_requests_jitter": "max_messages_jitter",
}


def _default_text(setting: Setting) -> str:
    if setting.kind == "hook":
        return "None"
    return f"`{setting.default!r}`"


def render_markdown() -> str:
    """Return the configuration reference as markdown (pasted into the README).

    Returns:
        One ``###`` table per section (name, flag, type, default, meaning), then the
        command-line-only options.
    """
    # No heading or introduction: the README has its own around the pasted output.
    lines = [
        "gunicorn's names are accepted as aliases in the file: "
        + ", ".join(f"`{alias}` = `{name}`" for alias, name in ALIASES.items())
        + ". Names starting with `_` and imported modules are ignored; any other unknown name is an error.",
        "",
    ]
    sections: dict[str, list[Setting]] = {}
    for setting in SETTINGS:
        sections.setdefault(setting.section, []).append(setting)
    for section, settings in sections.items():
        lines += [f"### {section}", "", "| setting | flag | type | default | meaning |", "| --- | --- | --- | --- | --- |"]
        for setting in settings:
            flags = ", ".join(f"`{flag}`" for flag in setting.flags) or "(file only)"
            help_text = setting.help.replace("|", "\\|")
            lines.append(f"| `{setting.name}` | {flags} | {setting.type_name} | {_default_text(setting)} | {help_text} |")
        lines.append("")
    lines += [
        "Command-line only: `-c/--config FILE`, `--check-config` (load everything, import the settings "
        "module and check CHANNEL_LAYERS, then exit 0 or 1), `--print-config` (print the resolved "
        "settings and exit).",
        "",
    ]
    return "\n".join(lines)
