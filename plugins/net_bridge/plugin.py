"""net_bridge: the ``network`` role.

For now the minimal driver: network modes ``none`` and ``default``/``bridge``
both rely on the new network namespace the runtime makes, with loopback up;
``host`` shares the host's.  Bridges, veth pairs and IPAM come later.
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "network"


class LoopbackOnly:
    """attach/detach for containers that only have loopback."""

    def attach(self, container: dict, netns_path: str) -> dict:
        mode = container.get("network_mode") or "default"
        if mode == "host":
            return {"SandboxKey": "", "Networks": {"host": _endpoint()}}
        if mode == "none":
            return {"SandboxKey": netns_path, "Networks": {"none": _endpoint()}}
        # default/bridge: no bridge yet, so no address; reported as docker names it
        return {"SandboxKey": netns_path, "Networks": {"bridge": _endpoint()}}

    def detach(self, container: dict) -> None:
        return None


def _endpoint() -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": "", "DriverOpts": None}


@hookimpl
def pallet_provide_network(kernel):
    return LoopbackOnly()
