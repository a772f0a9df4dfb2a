"""What a dockerd that is not part of a swarm answers: pallet is no swarm
manager, so every swarm, service, node, task, secret and config endpoint
answers as such a dockerd does (503 and its message), and managed plugins
are none (an empty list, "not found" by name).

Clients that tidy up swarm state before or after their work (docker-py's
test helpers, compose) read these answers and go on.
"""
from __future__ import annotations

from pallet.core import errors

#: dockerd's errNoManager text
NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or '
               '"docker swarm join" to connect this node to swarm and try again.')
#: dockerd's errNoSwarm text
NOT_IN_SWARM = "This node is not part of a swarm"

#: the families answered with :data:`NOT_MANAGER` (with any sub-path)
MANAGER_ONLY = ("services", "nodes", "tasks", "secrets", "configs")


def not_manager() -> errors.Unavailable:
    return errors.Unavailable(NOT_MANAGER)


def swarm_answer(method: str, tail: str) -> errors.PalletError:
    """The error a non-swarm dockerd gives for ``METHOD /swarm{tail}``."""
    tail = tail.rstrip("/")
    if method == "POST" and tail == "/leave":
        return errors.Unavailable(NOT_IN_SWARM)
    if method == "POST" and tail in ("/init", "/join"):
        # a dockerd would make (or join) a swarm here; pallet has no swarm mode
        return errors.NotImplementedYet("pallet does not implement swarm mode: this node "
                                        "cannot be part of a swarm")
    return not_manager()


def plugin_not_found(name: str) -> errors.NotFound:
    """dockerd's answer for a managed plugin it does not have."""
    return errors.NotFound(f'plugin "{name}" not found')


def plugin_reference(name: str) -> str:
    """A plugin name as dockerd's upgrade names it (``:latest`` added)."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in name else name + ":latest"


PLUGIN_FILTERS = ("capability", "enabled")


def list_plugins(filters: dict) -> list:
    """``GET /plugins``: none (filters checked as dockerd checks them)."""
    for key, values in filters.items():
        if key not in PLUGIN_FILTERS:
            raise errors.InvalidArgument(f"invalid filter '{key}'")
        if key == "enabled":
            for v in values:
                if v not in ("true", "false"):
                    raise errors.InvalidArgument(
                        f'Invalid filter \'enabled={v}\' : must be "true" or "false"')
    return []
