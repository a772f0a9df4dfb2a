"""net_cni: the ``network`` role of palletd from a CNI configuration list,
as podman 4 can: each container's network namespace is attached by the CNI
plugins of the list (pallet.cni), instead of net_bridge's own bridge.

Wiring only; the driver is ``driver.CNINetwork``.  Select it with
``[roles] network = "net_cni"``; configuration, ``[plugins.net_cni]``::

    conf_dir = "/etc/cni/net.d"               # where the list is read from
    bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
    network = ""                              # the list's name ("" : the first one)
    resolv-conf = "/etc/resolv.conf"          # the host resolvers containers get
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "network"


@hookimpl
def pallet_configure(kernel):
    if kernel.has_role("network") and kernel.roles.get("network") == "net_cni":
        from pallet.plugins.net_cni.driver import check_config
        check_config(kernel.plugin_config("net_cni"))


@hookimpl
def pallet_provide_network(kernel):
    from pallet.plugins.net_cni.driver import CNINetwork

    return CNINetwork(network_root=kernel.paths.network_root,
                      exec_root=kernel.paths.exec_root,
                      config=kernel.plugin_config("net_cni"))


@hookimpl
def pallet_startup(kernel):
    if kernel.has_role("network") and kernel.roles.get("network") == "net_cni":
        kernel.provide("network").start(None)


@hookimpl
def pallet_shutdown(kernel):
    if kernel.has_role("network") and kernel.roles.get("network") == "net_cni":
        kernel.provide("network").shutdown()
