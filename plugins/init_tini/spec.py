"""init_tini's part of a container's OCI spec."""
from __future__ import annotations

#: annotation that asks runtime_ns for the builtin init (docs/ARCHITECTURE.md)
ANNOTATION = "org.pallet.init"


def add_init(spec: dict, init_path: str | None, target: str = "/sbin/docker-init") -> None:
    """Make the container's PID 1 an init.

    With ``init_path`` (a static binary on the host) it is bind-mounted
    read-only at ``target`` and put in front of ``process.args`` as dockerd
    does (``docker-init -- cmd...``); without it the spec asks runtime_ns for
    the builtin init through the annotation.
    """
    if init_path:
        from pallet.engine.spec import with_init_binary

        with_init_binary(spec, init_path, target)
    else:
        spec.setdefault("annotations", {})[ANNOTATION] = "builtin"
