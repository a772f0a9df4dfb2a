"""Plugin loading and the kernel object every hook receives.

Plugins are found with stevedore in the entry-point group ``pallet.plugins``,
the built-in ones exactly like third-party ones.  Each plugin module declares
``PALLET_ROLE`` (a role of ``hookspecs.ROLES``, or ``None`` for an extension
plugin that only takes part in pipelines and events).  The configuration says
which plugin fills each role; only that one is registered for the role, so
provider hooks have a single answer.
"""
from __future__ import annotations

import logging
from typing import Iterable

import attrs

from pallet.core import hookspecs
from pallet.core.config import Config
from pallet.core.errors import ConfigError
from pallet.core.paths import DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT, Paths

GROUP = "pallet.plugins"
log = logging.getLogger("pallet.kernel")


@attrs.frozen
class Options:
    """What the command that loads the kernel tells every plugin and library.

    ``containerd_address``: the containerd palletd's engine talks to (None:
    ``paths.containerd_socket``); ``debug``: debug logging was asked for;
    ``live_restore``: containers outlive palletd; ``config_path``: the
    configuration file given on the command line (child processes get it).
    """

    containerd_address: str | None = None
    debug: bool = False
    live_restore: bool = False
    config_path: str | None = None


@attrs.frozen
class PluginInfo:
    """One discovered plugin: its entry-point name, role and distribution."""

    name: str
    role: str | None
    distribution: str
    version: str
    module: object = attrs.field(repr=False, eq=False)


def discover() -> dict[str, PluginInfo]:
    """Import every plugin of the entry-point group and describe it.

    A plugin that fails to import stops start-up with its name and the error,
    rather than silently leaving its role empty.
    """
    from stevedore import ExtensionManager

    failures: list[str] = []

    def on_failure(_manager, entrypoint, exc):
        failures.append(f"plugin {entrypoint.name} ({entrypoint.value}): {exc}")

    manager = ExtensionManager(GROUP, invoke_on_load=False,
                               on_load_failure_callback=on_failure)
    if failures:
        raise ConfigError("cannot load " + "; ".join(failures))
    # stevedore's cached entry points do not carry their distribution: ask
    # importlib.metadata which distribution declares each one
    from importlib.metadata import entry_points

    dists = {(ep.name, ep.value): ep.dist for ep in entry_points(group=GROUP)}
    found: dict[str, PluginInfo] = {}
    for ext in manager.extensions:
        dist = dists.get((ext.entry_point.name, ext.entry_point.value))
        role = getattr(ext.plugin, "PALLET_ROLE", None)
        if role is not None and role not in hookspecs.ROLES:
            raise ConfigError(f"plugin {ext.name} declares unknown role {role!r}")
        found[ext.name] = PluginInfo(
            name=ext.name, role=role,
            distribution=dist.metadata["Name"] if dist else "?",
            version=dist.version if dist else "?",
            module=ext.plugin)
    return found


def resolve_roles(config: Config, found: dict[str, PluginInfo]) -> dict[str, str]:
    """Map each role to the configured plugin, or refuse with one clear line.

    A role left empty, filled twice, or naming a plugin that is not installed
    (or that fills another role) is an error naming the role and the installed
    candidates.
    """
    chosen: dict[str, str] = {}
    for role, default in hookspecs.ROLES.items():
        candidates = sorted(p.name for p in found.values() if p.role == role)
        value = config.roles.get(role, default)
        if isinstance(value, (tuple, list)):
            if len(value) != 1:
                what = "filled twice" if len(value) > 1 else "left empty"
                raise ConfigError(f"role {role} is {what} ({', '.join(value) or 'no plugin'}); "
                                  f"installed candidates: [{', '.join(candidates)}]")
            value = value[0]
        if not value:
            raise ConfigError(f"role {role} is left empty; installed candidates: "
                              f"[{', '.join(candidates)}]")
        plugin = found.get(value)
        if plugin is None or plugin.role != role:
            why = "is not installed" if plugin is None else f"fills role {plugin.role}"
            raise ConfigError(f"role {role}: configured {value}, which {why}; "
                              f"installed candidates: [{', '.join(candidates)}]")
        chosen[role] = value
    for role in config.roles:
        if role not in hookspecs.ROLES:
            raise ConfigError(f"configuration names unknown role {role}; "
                              f"roles are [{', '.join(hookspecs.ROLES)}]")
    return chosen


class Kernel:
    """The loaded configuration and plugins of one process.

    Build it with :meth:`load`.  ``kernel.hook`` calls hooks; ``provide(role)``
    returns (and caches) the object of the plugin that fills a role.
    """

    def __init__(self, config: Config, paths: Paths, plugins: dict[str, PluginInfo],
                 roles: dict[str, str], loaded_roles: Iterable[str],
                 options: Options | None = None):
        self.config = config
        self.paths = paths
        self.options = options or Options()
        self.plugins = plugins
        self.roles = roles
        self.loaded_roles = frozenset(loaded_roles)
        self.pm = _plugin_manager()
        self._provided: dict[str, object] = {}

    @classmethod
    def load(cls, config: Config | None = None, *, paths: Paths | None = None,
             roles: Iterable[str] | None = None, extensions: bool = True,
             options: Options | None = None) -> "Kernel":
        """Discover plugins, check every role and register those this process needs.

        ``roles`` limits the role plugins registered (all by default);
        ``extensions`` registers the extension plugins that are not disabled.
        Every role is checked even when not loaded, so that a broken
        configuration is refused at start-up wherever it is read.
        """
        config = config if config is not None else Config.load()
        if paths is None:
            paths = Paths(config.daemon.get("data-root", DEFAULT_DATA_ROOT),
                          config.daemon.get("exec-root", DEFAULT_EXEC_ROOT))
        found = discover()
        chosen = resolve_roles(config, found)
        wanted = list(hookspecs.ROLES) if roles is None else list(roles)
        kernel = cls(config, paths, found, chosen, wanted, options)
        for role in wanted:
            info = found[chosen[role]]
            kernel.pm.register(info.module, name=info.name)
        if extensions:
            for info in found.values():
                if info.role is None and info.name not in config.disabled:
                    kernel.pm.register(info.module, name=info.name)
        kernel.hook.pallet_configure(kernel=kernel)
        return kernel

    @property
    def hook(self):
        return self.pm.hook

    def provide(self, role: str):
        """The object of the plugin that fills ``role`` (created once)."""
        if role not in self._provided:
            if role not in self.loaded_roles:
                raise ConfigError(f"role {role} is not loaded in this process")
            caller = getattr(self.hook, f"pallet_provide_{role}")
            obj = caller(kernel=self)
            if obj is None:
                raise ConfigError(f"plugin {self.roles[role]} provides nothing for role {role}")
            check_contract(role, obj, self.roles[role])
            self._provided[role] = obj
        return self._provided[role]

    def has_role(self, role: str) -> bool:
        """Whether a plugin for ``role`` is registered in this process."""
        return role in self.loaded_roles

    def plugin_config(self, name: str) -> dict:
        """The ``[plugins.<name>]`` configuration section (a fresh dict)."""
        return self.config.plugin_section(name)

    def loaded_plugins(self) -> list[PluginInfo]:
        """The plugins registered in this process."""
        names = {name for name, _ in self.pm.list_name_plugin()}
        return [p for p in self.plugins.values() if p.name in names]

    def notify(self, event: str, **kwargs) -> None:
        """Call the event hook ``pallet_on_<event>``; a failing plugin is logged, not raised."""
        try:
            getattr(self.hook, f"pallet_on_{event}")(kernel=self, **kwargs)
        except Exception:  # an event listener must not break the engine
            log.exception("plugin hook pallet_on_%s failed", event)


def _plugin_manager():
    """pluggy's manager, which also takes unmarked ``pallet_*`` hook functions
    (as pytest does ``pytest_`` ones): a plugin that imports no pluggy loads
    fast on ``pallet.commands.kernel_cache``."""
    import pluggy

    class Manager(pluggy.PluginManager):
        def parse_hookimpl_opts(self, plugin, name):
            opts = super().parse_hookimpl_opts(plugin, name)
            unmarked = name.startswith("pallet_") and hasattr(hookspecs, name)
            return {} if opts is None and unmarked and callable(getattr(plugin, name)) else opts

    pm = Manager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def check_contract(role: str, obj: object, plugin: str) -> None:
    """Refuse, with one clear line, an object that lacks what the role's
    contract (``pallet.core.contracts``) names."""
    from pallet.core import contracts

    contract = contracts.CONTRACTS.get(role)
    if contract is None or isinstance(obj, contract):
        return
    missing = sorted(name for name in contracts.members(contract) if not hasattr(obj, name))
    raise ConfigError(f"plugin {plugin} does not fill the {role} contract: "
                      f"missing {', '.join(missing)}")
