"""net_proxy: the ``port_proxy`` role (docker-proxy's place, and dockerd's
port mapper).

Wiring only; the work is in ``publisher.Publisher`` (ports, rules,
processes), ``ports.py`` (docker's port shapes) and ``proxy.py``
(``pallet-proxy``, one process per published port).  Configuration,
``[plugins.net_proxy]``::

    userland-proxy = true        # dockerd's --userland-proxy
    userland-proxy-path = ""     # dockerd's --userland-proxy-path (default: pallet-proxy)
    chain-prefix = "PALLET"      # default: net_bridge's chain-prefix
    iptables = true              # default: net_bridge's iptables
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "port_proxy"

KEYS = ("userland-proxy", "userland-proxy-path", "chain-prefix", "iptables")


def _config(kernel) -> dict:
    from pallet.core.errors import ConfigError

    cfg = kernel.plugin_config("net_proxy")
    unknown = set(cfg) - set(KEYS)
    if unknown:
        raise ConfigError(f"[plugins.net_proxy]: unknown keys {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(KEYS)}")
    bridge = kernel.plugin_config("net_bridge")
    out = {"userland-proxy": cfg.get("userland-proxy", True),
           "userland-proxy-path": cfg.get("userland-proxy-path") or None,
           "chain-prefix": cfg.get("chain-prefix") or bridge.get("chain-prefix") or "PALLET",
           "iptables": cfg.get("iptables", bridge.get("iptables", True))}
    for key in ("userland-proxy", "iptables"):
        if not isinstance(out[key], bool):
            raise ConfigError(f"[plugins.net_proxy] {key}: true or false expected")
    return out


@hookimpl
def pallet_configure(kernel):
    if kernel.has_role("port_proxy") and kernel.roles.get("port_proxy") == "net_proxy":
        _config(kernel)


@hookimpl
def pallet_provide_port_proxy(kernel):
    from pallet.plugins.net_proxy.publisher import Publisher

    cfg = _config(kernel)
    return Publisher(network_root=kernel.paths.network_root,
                     network=lambda: kernel.provide("network"),
                     prefix=cfg["chain-prefix"], userland_proxy=cfg["userland-proxy"],
                     proxy_path=cfg["userland-proxy-path"], iptables=cfg["iptables"])


@hookimpl
def pallet_startup(kernel):
    if kernel.has_role("port_proxy") and kernel.has_role("network"):
        kernel.provide("port_proxy").start()


@hookimpl
def pallet_shutdown(kernel):
    if kernel.has_role("port_proxy"):
        kernel.provide("port_proxy").shutdown()
