"""net_proxy: the ``port_proxy`` role (docker-proxy's place).

Publishing ports needs the bridge network, which is not there yet: for now
the provider refuses published ports with a clear "not implemented" error
(HTTP 501 through palletd).  ``proxy.py`` is ``pallet-proxy``, the per-port
userland forwarder with docker-proxy's flags.
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "port_proxy"


class RefusingPublisher:
    def publish(self, container: dict, bindings) -> None:
        if bindings:
            from pallet.core.errors import NotImplementedYet

            ports = ", ".join(f"{b.container_port}/{b.protocol}" for b in bindings)
            raise NotImplementedYet(f"publishing ports ({ports}) is not supported yet: "
                                    "pallet has no bridge network")

    def unpublish(self, container: dict) -> None:
        return None


@hookimpl
def pallet_provide_port_proxy(kernel):
    return RefusingPublisher()
