"""The kernel's answers cached, for commands that must start faster than the kernel loads.

:func:`load` answers from a cache of what a full :meth:`Kernel.load`
resolved (each role's plugin module, each contract's names, the plugins'
sections, the roots); ``provide`` imports the one plugin and calls its
``pallet_provide_<role>`` itself (a provider hook has one implementation).
The key: interpreter, ``sys.path`` and its entries' stat (installing a
distribution changes its directory), the configuration file's stat.  A
``marshal`` file under ``PALLET_KERNEL_CACHE`` (/run/pallet/kernel-cache),
trusted only if the user owns it alone; otherwise one full load writes it,
refusing a broken configuration as every process does.
"""
from __future__ import annotations

import marshal
import os
import sys

from pallet.core.errors import ConfigError

CACHE_DIR = os.environ.get("PALLET_KERNEL_CACHE") or "/run/pallet/kernel-cache"
CONFIG_PATH = "/etc/pallet/pallet.toml"


class LightKernel:
    """The kernel on the fast path (``plugin_config``, ``has_role``, ``provide``,
    ``roles``, ``paths``); anything else loads the full kernel and asks it."""

    def __init__(self, entry: dict, roles, full=None):
        self._entry = entry
        self._full = full
        self._provided: dict = {}
        self.loaded_roles = frozenset(roles)
        self.roles = dict(entry["roles"])

    def plugin_config(self, name: str) -> dict:
        """The ``[plugins.<name>]`` section (a fresh dict)."""
        return marshal.loads(marshal.dumps(self._entry["plugins"].get(name, {})))

    def has_role(self, role: str) -> bool:
        return role in self.loaded_roles

    @property
    def paths(self):
        from pallet.core.paths import Paths
        return Paths(*self._entry["roots"])

    def provide(self, role: str):
        """The object of the plugin that fills ``role`` (created once)."""
        if role in self._provided:
            return self._provided[role]
        if role not in self.loaded_roles:
            raise ConfigError(f"role {role} is not loaded in this process")
        target = self._entry["modules"].get(role)
        if self._full is not None or target is None:
            obj = self._load().provide(role)
        else:
            name, module = self.roles[role], __import__(target, fromlist=["_"])
            if getattr(module, "PALLET_ROLE", None) != role:  # edited since the cache
                return self._load().provide(role)
            if hasattr(module, "pallet_configure"):
                module.pallet_configure(kernel=self)
            obj = getattr(module, f"pallet_provide_{role}")(kernel=self)
            missing = [n for n in self._entry["members"].get(role, ()) if not hasattr(obj, n)]
            if obj is None or missing:
                raise ConfigError(f"plugin {name} provides nothing for role {role}" if obj is None
                                  else f"plugin {name} does not fill the {role} contract: "
                                  f"missing {', '.join(missing)}")
        self._provided[role] = obj
        return obj

    def _load(self):
        if self._full is None:
            from pallet.core.kernel import Kernel
            self._full = Kernel.load(roles=self.loaded_roles, extensions=False)
        return self._full

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._load(), name)


def load(roles) -> LightKernel:
    """A kernel that can provide ``roles``, from the cache when it is valid."""
    config_path = os.environ.get("PALLET_CONFIG") or CONFIG_PATH
    key = _key(config_path)
    path = os.path.join(CACHE_DIR, f"{_fnv1a(f'{sys.executable}{chr(0)}{config_path}'):08x}")
    entry = _read(path)
    if entry is not None and entry.get("key") == key:
        return LightKernel(entry, roles)
    from pallet.core.kernel import Kernel
    full = Kernel.load(roles=roles, extensions=False)
    entry = _entry(full, key)
    _write(path, entry)
    return LightKernel(entry, roles, full)


def _fnv1a(text: str) -> int:
    """A 32-bit FNV-1a hash: the file name must not depend on str hashing's
    seed, and zlib's crc32 would be one more shared library to load."""
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def _key(config_path: str) -> tuple:
    def stamp(path):
        try:
            st = os.stat(path or ".")
            return st.st_mtime_ns, st.st_size, st.st_ino
        except OSError:
            return None
    return (sys.version, sys.executable, tuple(sys.path), tuple(map(stamp, sys.path)),
            config_path, stamp(config_path))


def _entry(kernel, key: tuple) -> dict:
    """What the fast path needs of a loaded kernel."""
    from pallet.core import contracts

    modules = {}
    for role, name in kernel.roles.items():
        obj = kernel.plugins[name].module
        if type(obj) is type(sys):  # a module; other entry point targets take the full path
            modules[role] = obj.__name__
    return {"key": key, "roles": dict(kernel.roles), "modules": modules,
            "members": {role: contracts.members(contract)
                        for role, contract in contracts.CONTRACTS.items()},
            "plugins": {name: kernel.plugin_config(name) for name in kernel.plugins},
            "roots": (kernel.paths.data_root, kernel.paths.exec_root)}


def _read(path: str) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None  # not ours alone: someone else may have written it
        return marshal.loads(os.read(fd, st.st_size))
    except (OSError, ValueError, EOFError, TypeError):
        return None
    finally:
        os.close(fd)


def _write(path: str, entry: dict) -> None:
    """Write the cache atomically (not writable: every run takes the full path)."""
    tmp = f"{path}.{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, marshal.dumps(entry))
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except (OSError, ValueError):
        pass
