"""Restart policies (``--restart no|always|unless-stopped|on-failure[:N]``)
with dockerd's backoff: the first restart waits 100 ms, each next one twice
as long (at most a minute), and a container that stayed up 10 seconds or more
starts again from 100 ms."""
from __future__ import annotations

from pallet.core.errors import InvalidArgument

POLICIES = ("no", "always", "unless-stopped", "on-failure")
INITIAL = 0.1
MAXIMUM = 60.0
RESET_AFTER = 10.0


def check_policy(host: dict) -> dict:
    """``HostConfig.RestartPolicy`` checked as dockerd does; returns it completed."""
    policy = host.get("RestartPolicy") or {}
    if not isinstance(policy, dict):
        raise InvalidArgument("invalid HostConfig.RestartPolicy: an object is expected")
    name = policy.get("Name") or "no"
    if not isinstance(name, str) or name not in POLICIES:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of "
                              "'no', 'always', 'on-failure', or 'unless-stopped'")
    retries = policy.get("MaximumRetryCount") or 0
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise InvalidArgument(f"invalid restart policy: invalid MaximumRetryCount: {retries!r}")
    if retries < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count can't be negative")
    if retries and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used "
                              "with 'on-failure'")
    if name != "no" and host.get("AutoRemove"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    return {"Name": name, "MaximumRetryCount": retries}


def should_restart(policy: dict, exit_code: int, manually_stopped: bool,
                   restart_count: int) -> bool:
    """Whether a container that exited with ``exit_code`` comes back."""
    name = (policy or {}).get("Name") or "no"
    if name == "always":
        return True
    if name == "unless-stopped":
        return not manually_stopped
    if name == "on-failure":
        limit = (policy or {}).get("MaximumRetryCount") or 0
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False


def next_timeout(current: float, ran_for: float) -> float:
    """The wait before the next restart, from the last one and how long the
    container ran this time."""
    if ran_for >= RESET_AFTER:
        current = 0.0
    if current <= 0:
        return INITIAL
    return min(current * 2, MAXIMUM)
