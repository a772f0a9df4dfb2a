"""The endpoints of what pallet does not take part in, answered as a dockerd
outside any swarm answers them (``pallet.engine.swarm``), and the registry
look-ups that need no pull: ``/distribution/{name}/json``, ``/images/search``."""
from __future__ import annotations

from aiohttp import web

from pallet.engine import swarm
from pallet.plugins.api_rest.server import json_response, qfilters, qint


async def swarm_family(request: web.Request):
    raise swarm.swarm_answer(request.method, request.match_info.get("tail", ""))


async def manager_only(request: web.Request):
    raise swarm.not_manager()


async def plugins_list(request: web.Request):
    return json_response(swarm.list_plugins(qfilters(request)))


async def plugin_named(request: web.Request):
    raise swarm.plugin_not_found(request.match_info["name"])


async def plugin_upgrade(request: web.Request):
    raise swarm.plugin_not_found(swarm.plugin_reference(request.match_info["name"]))


async def plugin_privileges(request: web.Request):
    return json_response([])


async def distribution_info(request: web.Request):
    from pallet.engine import pull, registry_info

    out = await registry_info.distribution_info(pull.distribution(request),
                                                request.match_info["name"],
                                                pull.credentials(request))
    return json_response(out)


async def search(request: web.Request):
    from pallet.engine import pull, registry_info

    out = await registry_info.search(pull.distribution(request),
                                     request.query.get("term", ""), qint(request, "limit"),
                                     qfilters(request), pull.credentials(request))
    return json_response(out)


def register(routes) -> None:
    routes.add("*", "/swarm", swarm_family)
    routes.add("*", "/swarm{tail:/.*}", swarm_family)
    for family in swarm.MANAGER_ONLY:
        routes.add("*", f"/{family}", manager_only)
        routes.add("*", f"/{family}/{{tail:.*}}", manager_only)
    routes.add("GET", "/plugins", plugins_list)
    routes.add("GET", "/plugins/privileges", plugin_privileges)
    routes.add("GET", "/plugins/{name:.+}/json", plugin_named)
    routes.add("DELETE", "/plugins/{name:.+}", plugin_named)
    for verb in ("enable", "disable", "set", "push"):
        routes.add("POST", f"/plugins/{{name:.+}}/{verb}", plugin_named)
    routes.add("POST", "/plugins/{name:.+}/upgrade", plugin_upgrade)
    routes.add("GET", "/distribution/{name:.+}/json", distribution_info)
    routes.add("GET", "/images/search", search)
