"""The engine's configuration: one TOML file.

Default path ``/etc/pallet/pallet.toml`` (``PALLET_CONFIG`` or ``--config``
choose another).  Layout::

    [daemon]                 # palletd's own settings, overridden by its flags
    data-root = "/var/lib/pallet"
    exec-root = "/run/pallet"

    [roles]                  # which plugin fills each role (see hookspecs.ROLES)
    runtime = "runtime_ns"

    [engine]                 # the Docker engine library (pallet.engine) in palletd
    runtime = "io.containerd.pallet.v2" # containerd runtime name of new containers
    cgroup-parent = "/pallet"           # dockerd's --cgroup-parent
    volume-plugin-dirs = ["/run/docker/plugins"]
    [engine.registry]        # dockerd's registry keys (insecure-registries, ...)

    [containerd]             # pallet-containerd's service layer
    shim-debug = false       # shims log at debug level
    shim-memory-merge = "on" # the kernel merges the shims' copied pages (KSM): "on"
                             # starts ksmd if stopped, "mark" leaves it to the host, "off"
    [containerd.runtimes]    # before containerd's rule (io.containerd.X.vN runs
                             # containerd-shim-X-vN): name -> "pallet-shim", a binary or a path
    "io.containerd.runc.v2" = "pallet-shim"   # (io.containerd.pallet.v1/v2 always are)

    [plugins]
    disabled = ["hello"]     # extension plugins not to load

    [plugins.init_tini]      # each plugin's own section
    init_path = "/usr/bin/tini-static"
"""
from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any, Mapping

import attrs

from pallet.core.errors import ConfigError

DEFAULT_PATH = "/etc/pallet/pallet.toml"


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@attrs.frozen
class Config:
    """A parsed configuration file (read-only)."""

    roles: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze)
    plugins: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=_freeze)
    disabled: tuple[str, ...] = ()
    daemon: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze)
    engine: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze)
    containerd: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze)
    source: str | None = None

    @classmethod
    def load(cls, path: str | None = None) -> "Config":
        """Read the file at ``path`` (or the default one).

        A missing default file gives the built-in defaults; a missing file that
        was asked for explicitly, or one that is not valid TOML, is an error.
        """
        explicit = path or os.environ.get("PALLET_CONFIG")
        path = explicit or DEFAULT_PATH
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if explicit:
                raise ConfigError(f"open configuration {path}: no such file") from None
            return cls()
        except OSError as e:
            raise ConfigError(f"open configuration {path}: {e.strerror.lower()}") from None
        return cls.from_toml(data.decode(), source=path)

    @classmethod
    def from_toml(cls, text: str, source: str | None = None) -> "Config":
        """Parse TOML text (``source`` names it in error messages)."""
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"parse configuration {source or '<string>'}: {e}") from None
        plugins = dict(doc.get("plugins", {}))
        disabled = plugins.pop("disabled", [])
        if not isinstance(disabled, list):
            raise ConfigError("configuration: plugins.disabled must be a list of plugin names")
        for name, section in plugins.items():
            if not isinstance(section, dict):
                raise ConfigError(f"configuration: [plugins.{name}] must be a table")
        for name in ("roles", "daemon", "engine", "containerd"):
            if not isinstance(doc.get(name, {}), dict):
                raise ConfigError(f"configuration: [{name}] must be a table")
        return cls(roles=doc.get("roles", {}), plugins=plugins, disabled=tuple(disabled),
                   daemon=doc.get("daemon", {}), engine=doc.get("engine", {}),
                   containerd=doc.get("containerd", {}), source=source)

    def section(self, name: str) -> dict:
        """A top-level table (``daemon``, ``engine``, ``containerd``) as a fresh dict
        (empty if absent)."""
        return _thaw(getattr(self, name))

    def plugin_section(self, name: str) -> dict:
        """The ``[plugins.<name>]`` section as a fresh dict (empty if absent)."""
        return _thaw(self.plugins.get(name, {}))
