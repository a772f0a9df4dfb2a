"""Contract tests: every installed implementation of a role against the
role's contract (``pallet.core.contracts``).

Each ``tests/contracts/<role>/`` directory parametrises its fixtures with
:func:`implementations`, the plugins installed for that role (found through
the entry points, as the kernel finds them), so that a third-party author who
installs a plugin runs the same tests against it::

    pytest tests/contracts/runtime                 # every installed runtime
    pytest tests/contracts/runtime -k runtime_oci  # one of them

``PALLET_CONTRACT_PLUGINS=name[,name]`` limits the run to the named plugins.
"""
from __future__ import annotations

import os


def implementations(role: str) -> list[str]:
    """The names of the installed plugins that declare ``role``, sorted."""
    from pallet.core.kernel import discover

    names = sorted(p.name for p in discover().values() if p.role == role)
    wanted = os.environ.get("PALLET_CONTRACT_PLUGINS")
    if wanted:
        keep = set(wanted.split(","))
        names = [n for n in names if n in keep]
    return names


def kernel_for(role: str, plugin: str, paths, plugin_config: dict | None = None,
               roles: tuple[str, ...] | None = None):
    """A kernel whose ``role`` is filled by ``plugin`` (other roles: defaults)."""
    from pallet.core.config import Config
    from pallet.core.kernel import Kernel

    sections = {plugin: plugin_config} if plugin_config else {}
    config = Config(roles={role: plugin}, plugins=sections)
    return Kernel.load(config, paths=paths, roles=roles or (role,), extensions=False)
