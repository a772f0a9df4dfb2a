"""A network configuration list run as libcni runs it.

ADD runs the plugins in order, each receiving the previous one's result as
``prevResult``; DEL runs them in reverse with the cached result of the ADD;
CHECK runs them in order with it.  Each plugin's configuration gets the
list's ``name`` and ``cniVersion`` and, for the capabilities it declares
(``"capabilities": {"portMappings": true}``), a ``runtimeConfig`` with the
caller's values for them (the spec's "Deriving runtimeConfig").
"""
from __future__ import annotations

import json
import logging
from typing import Mapping, Sequence

from pallet.core.errors import InvalidArgument

from pallet.cni import conf as confmod
from pallet.cni.cache import CachedAttachment, ResultCache
from pallet.cni.invoke import DEFAULT_TIMEOUT, Environment, run
from pallet.cni.result import Result

log = logging.getLogger("pallet.cni")


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


def plugin_config(net: confmod.NetworkConfigList, plugin: dict, prev: dict | None,
                  capability_args: Mapping) -> dict:
    """The configuration one plugin of ``net`` receives on stdin."""
    out = dict(plugin)
    out["name"] = net.name
    out["cniVersion"] = net.cni_version
    if prev is not None:
        out["prevResult"] = prev
    runtime = {cap: capability_args[cap]
               for cap, on in (plugin.get("capabilities") or {}).items()
               if on and cap in capability_args}
    if runtime:
        out["runtimeConfig"] = runtime
    return out


class CNI:
    """Plugins found in ``plugin_dirs``; results cached under ``cache_dir``."""

    def __init__(self, plugin_dirs: Sequence[str] = confmod.DEFAULT_PLUGIN_DIRS,
                 cache_dir: str = "/var/lib/cni", *, timeout: float = DEFAULT_TIMEOUT):
        self.plugin_dirs = tuple(plugin_dirs)
        self.cache = ResultCache(cache_dir)
        self.timeout = timeout

    def _run(self, plugin: dict, command: str, config: dict, env: Environment) -> dict | None:
        return run(plugin["type"], command, config, env, self.plugin_dirs, timeout=self.timeout)

    def add(self, net: confmod.NetworkConfigList, env: Environment,
            capability_args: Mapping | None = None) -> Result:
        """Attach the container to ``net``; the final result, cached.

        On failure nothing is cached and the error is raised: the caller runs
        :meth:`delete` to undo what the first plugins did, as containerd and
        kubelet do."""
        caps = dict(capability_args or {})
        prev = None
        for plugin in net.plugins:
            out = self._run(plugin, "ADD", plugin_config(net, plugin, prev, caps), env)
            prev = out if out is not None else prev
        self.cache.save(net.name, env.container_id, env.ifname, env.netns, net.raw, env.args,
                        caps, prev)
        return Result.from_json(prev)

    def cached(self, network: str, container_id: str, ifname: str = "eth0"
               ) -> CachedAttachment | None:
        return self.cache.load(network, container_id, ifname)

    def delete(self, net: confmod.NetworkConfigList | None, env: Environment,
               capability_args: Mapping | None = None) -> None:
        """Detach the container: the cached configuration and result when there
        are some (``net`` otherwise; it may be None only with a cache entry).

        Every plugin is run even if one fails (the first error is raised
        afterwards), and the cache entry goes only once they all succeeded,
        so a failed DEL can be retried."""
        name = net.name if net is not None else ""
        entry = self.cache.load(name, env.container_id, env.ifname) if name else None
        if entry is not None and entry.config:
            try:
                net = confmod.parse(entry.config, entry.path)
            except InvalidArgument as e:
                log.warning("cached configuration of %s unreadable (%s): using the current one",
                            env.container_id, e)
        if net is None:
            raise InvalidArgument(f"delete {env.container_id}: no network configuration")
        caps = dict(capability_args if capability_args is not None else
                    (entry.capability_args if entry else {}))
        if entry is not None and entry.args and not env.args:
            env = Environment(env.container_id, env.netns, env.ifname, entry.args)
        prev = entry.result if entry is not None and _version(net.cni_version) >= (0, 4) else None
        first_error = None
        for plugin in reversed(net.plugins):
            try:
                self._run(plugin, "DEL", plugin_config(net, plugin, prev, caps), env)
            except Exception as e:  # noqa: BLE001 — the others still free their part
                log.warning("cni del %s (%s): %s", env.container_id, plugin["type"], e)
                first_error = first_error or e
        if first_error is not None:
            raise first_error
        self.cache.delete(net.name, env.container_id, env.ifname)

    def delete_cached(self, entry: CachedAttachment) -> None:
        """DEL for an attachment only the cache remembers (its owner is gone)."""
        net = confmod.parse(entry.config, entry.path)
        self.delete(net, Environment(entry.container_id, entry.netns, entry.ifname, entry.args),
                    entry.capability_args)

    def check(self, net: confmod.NetworkConfigList, env: Environment) -> None:
        """CHECK the attachment against its cached result (CNI 0.4.0 and later)."""
        if _version(net.cni_version) < (0, 4):
            raise InvalidArgument(f"configuration version {net.cni_version!r} does not support "
                                  "the CHECK command")
        if net.disable_check:
            return
        entry = self.cache.load(net.name, env.container_id, env.ifname)
        if entry is None or entry.result is None:
            raise InvalidArgument(f"check {env.container_id} on {net.name}: no cached result")
        for plugin in net.plugins:
            self._run(plugin, "CHECK",
                      plugin_config(net, plugin, entry.result, entry.capability_args), env)

    def version(self, plugin: str, cni_version: str = "1.0.0") -> dict:
        """The plugin's VERSION answer (``supportedVersions``)."""
        return run(plugin, "VERSION", {"cniVersion": cni_version},
                   Environment("", ""), self.plugin_dirs, timeout=self.timeout) or {}


def dumps(net: confmod.NetworkConfigList) -> str:
    """The list as JSON (for logs and inspect)."""
    return json.dumps({"cniVersion": net.cni_version, "name": net.name,
                       "plugins": list(net.plugins)})
