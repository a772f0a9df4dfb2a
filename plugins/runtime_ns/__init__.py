"""runtime_ns: pallet's OCI runtime (runc's role), as a library and as pallet-runc.

Modules: ``runtime`` (``NsRuntime``: create, start, kill, delete, state,
list, exec, pause, resume, pids, update, stats), ``spawn`` (forking the
container process, the parent's side), ``process`` (the container process,
from fork to exec), ``linux`` (system calls Python lacks), ``mounts`` (rootfs, mounts,
devices, pivot_root), ``cgroups`` / ``cgroups2`` (cgroup v1 / v2 with its
eBPF device filter), ``seccomp`` (the BPF compiler) with ``_syscalls``
(generated tables), ``validate`` (config.json against the OCI schema, kept
in ``_oci_schema``), ``hooks``, ``state`` (state on disk), ``_jsonlite``
(JSON without importing json), ``cli`` (``pallet-runc``), ``features``,
``specgen``, ``console``, ``gen_tables`` (development-time generator),
``plugin`` (wiring).  Nothing is imported here so that ``plugin.py`` stays
cheap to load.
"""
