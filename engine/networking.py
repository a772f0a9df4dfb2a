"""palletd's calls into the ``network`` and ``port_proxy`` roles.

Translation only: a container record becomes the dict the network plugins
take, and their blocking calls (netlink, iptables, processes: a few
milliseconds) run off the event loop.  The networking itself lives in the
plugins (net_bridge, net_proxy); see their ``driver.py`` and
``publisher.py`` for the interface.
"""
from __future__ import annotations

import asyncio
import logging

from pallet.core import errors
from pallet.engine.metrics import network_timer

log = logging.getLogger("pallet.api_rest.networking")


def info(c) -> dict:
    """What the network plugins are told about a container."""
    cfg = c.data["Config"]
    return {"id": c.id, "name": c.name, "hostname": cfg.get("Hostname") or c.id[:12],
            "domainname": cfg.get("Domainname") or "", "host_config": c.data["HostConfig"],
            "exposed_ports": cfg.get("ExposedPorts") or {},
            "hosts_path": c.data.get("HostsPath", ""),
            "hostname_path": c.data.get("HostnamePath", ""),
            "resolv_conf_path": c.data.get("ResolvConfPath", ""),
            "mac_address": cfg.get("MacAddress") or ""}


def _roles(kernel):
    net = kernel.provide("network") if kernel.has_role("network") else None
    proxy = kernel.provide("port_proxy") if kernel.has_role("port_proxy") else None
    return net, proxy


async def register(kernel, c, networking_config) -> None:
    """At create: the network settings are checked and remembered."""
    net, proxy = _roles(kernel)
    host = c.data["HostConfig"]
    if proxy is not None:
        proxy.check(host, c.data["Config"].get("ExposedPorts"))
    if net is not None:
        await asyncio.to_thread(net.register, info(c) | {
            "networking_config": networking_config or {}})


async def unregister(kernel, c) -> None:
    """At removal."""
    net, proxy = _roles(kernel)
    try:
        if proxy is not None:
            await asyncio.to_thread(proxy.unpublish, c.id)
        if net is not None:
            await asyncio.to_thread(net.unregister, c.id)
    except Exception as e:  # noqa: BLE001 — the container goes whatever the plugins say
        log.warning("container %s: forget network: %s", c.id[:12], e)


async def setup(kernel, c, links=()) -> dict:
    """At start, before the spec is built: the sandbox; NetworkSettings without Ports.
    ``links``: the running containers it links to (``id``, ``name``, ``alias``,
    ``hostname``), whose names the plugin makes resolvable in it."""
    net, _ = _roles(kernel)
    if net is None:
        return {}
    return await asyncio.to_thread(net.setup, info(c) | {"links": list(links)})


async def publish(kernel, c) -> dict:
    """At start, after :func:`setup`: the published ports (``NetworkSettings.Ports``)."""
    _, proxy = _roles(kernel)
    if proxy is None:
        return {}
    return await asyncio.to_thread(proxy.publish, info(c))


async def teardown(kernel, c) -> None:
    """The container's process is gone (or its start failed): rules, proxies,
    endpoints, addresses and sandbox go."""
    net, proxy = _roles(kernel)
    for what, fn in (("unpublish ports", proxy and proxy.unpublish),
                     ("release network", net and net.release)):
        if fn is None:
            continue
        try:
            await asyncio.to_thread(fn, c.id)
        except Exception as e:  # noqa: BLE001 — the exit is recorded whatever happens here
            log.warning("container %s: %s: %s", c.id[:12], what, e)


def settings(kernel, c) -> dict:
    """docker's NetworkSettings as the plugins see it now (inspect)."""
    net, proxy = _roles(kernel)
    if net is None:
        return c.data.get("NetworkSettings") or {}
    out = net.settings(c.id)
    out["Ports"] = proxy.ports(c.id) if proxy is not None and c.running else {}
    return out


def summary(kernel, c, entry: dict) -> dict:
    """``docker ps``: Ports and NetworkSettings.Networks filled in."""
    net, proxy = _roles(kernel)
    if proxy is not None and c.running:
        entry["Ports"] = proxy.ports_list(c.id)
    if net is not None:
        entry["NetworkSettings"] = {"Networks": net.settings(c.id).get("Networks") or {}}
    return entry


async def connect(kernel, c, network: str, endpoint_config) -> None:
    net, _ = _roles(kernel)
    if net is None:
        raise errors.NotImplementedYet("no network plugin is loaded")
    with network_timer(kernel, "connect"):
        await asyncio.to_thread(net.connect, network, info(c), endpoint_config or {})


async def disconnect(kernel, c, network: str, force: bool) -> None:
    net, _ = _roles(kernel)
    if net is None:
        raise errors.NotImplementedYet("no network plugin is loaded")
    with network_timer(kernel, "disconnect"):
        await asyncio.to_thread(net.disconnect, network, c.id, force)


async def create_network(kernel, body) -> dict:
    """``POST /networks/create`` through the network role."""
    net, _ = _roles(kernel)
    if net is None:
        raise errors.NotImplementedYet("no network plugin is loaded")
    with network_timer(kernel, "create"):
        return await asyncio.to_thread(net.create_network, body)


async def remove_network(kernel, ref: str) -> None:
    net, _ = _roles(kernel)
    if net is None:
        raise errors.NotImplementedYet("no network plugin is loaded")
    with network_timer(kernel, "delete"):
        await asyncio.to_thread(net.remove_network, ref)
