"""net_bridge: the ``network`` role (dockerd's bridge driver, with pyroute2).

Wiring only; the driver is ``driver.BridgeDriver`` (container side in
``sandbox.py``).  Configuration, ``[plugins.net_bridge]``, mirroring
dockerd's flags::

    bridge = "pallet0"        # the default bridge's Linux name (-b)
    bip = "172.17.0.1/16"     # its gateway/prefix (--bip); unset: picked free
    fixed-cidr = ""           # range addresses come from (--fixed-cidr)
    icc = true                # containers of the default bridge talk (--icc)
    mtu = 1500                # --mtu
    ip-masq = true            # --ip-masq
    iptables = true           # --iptables
    chain-prefix = "PALLET"   # pallet's iptables chains: PALLET-FORWARD, ...
    resolv-conf = "/etc/resolv.conf"   # the host resolvers containers get
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "network"


@hookimpl
def pallet_configure(kernel):
    if kernel.has_role("network") and kernel.roles.get("network") == "net_bridge":
        from pallet.plugins.net_bridge.driver import check_config
        check_config(kernel.plugin_config("net_bridge"))


@hookimpl
def pallet_provide_network(kernel):
    import asyncio

    from pallet.plugins.net_bridge.driver import BridgeDriver

    driver = BridgeDriver(network_root=kernel.paths.network_root,
                          exec_root=kernel.paths.exec_root,
                          config=kernel.plugin_config("net_bridge"))
    try:  # the embedded DNS server runs on the daemon's loop when there is one
        driver.dns.use_loop(asyncio.get_running_loop())
    except RuntimeError:
        pass
    return driver


@hookimpl
def pallet_startup(kernel):
    import asyncio

    if not kernel.has_role("network"):
        return
    driver = kernel.provide("network")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    driver.start(loop)
    driver.warm_up()


@hookimpl
def pallet_shutdown(kernel):
    if kernel.has_role("network"):
        kernel.provide("network").shutdown()
