"""runtime_ns: pallet's OCI runtime (runc's role), as a library and as pallet-runc.

Modules: ``linux`` (ctypes syscalls), ``mounts`` (rootfs, mounts, devices,
pivot_root), ``cgroups`` (cgroup v1), ``process`` (the container process,
from fork to exec), ``state`` (state on disk), ``runtime`` (``NsRuntime``:
create, start, kill, delete, state, list), ``cli`` (``pallet-runc``),
``plugin`` (wiring).  Nothing is imported here so that ``plugin.py`` stays
cheap to load.
"""
