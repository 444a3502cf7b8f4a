"""supervisor: the shmchannels master — config, sockets, forking, signals, systemd.

Public names: :class:`Arbiter` with its :class:`ChildSpec` table, :func:`load_config`
and :class:`ConfigError`. The command is ``shmchannels`` (``supervisor.cli:main``).
"""

from ._config import Config, load_config
from ._settings import SETTINGS, ConfigError
from .arbiter import Arbiter, ChildContext, ChildSpec

__all__ = ["Arbiter", "ChildContext", "ChildSpec", "Config", "ConfigError", "SETTINGS", "load_config"]
