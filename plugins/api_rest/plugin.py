"""api_rest: the ``client_protocol`` role, the Docker Engine API over HTTP
(aiohttp), serving the engine library (:mod:`pallet.engine`) in palletd.

Wiring only: the application and its serving loop are in ``server.py``,
the translators in ``handlers_*.py`` and the stream framing in
``streams.py``.  It has no configuration of its own: the engine's settings
are the ``[engine]`` table.
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "client_protocol"


@hookimpl
def pallet_provide_client_protocol(kernel):
    from pallet.plugins.api_rest.server import RestProtocol

    return RestProtocol(kernel)
