"""runtime_oci: the ``runtime`` role filled by an OCI runtime binary.

Wiring only; the runtime is ``runtime.OciRuntime``.  Configuration
(``[plugins.runtime_oci]``): ``binary`` (a name on PATH or a path; default
``runc``: Debian's runc, crun, pallet-runc...), ``root`` (the state root;
default ``kernel.paths.runtime_root``, below which the shim adds the
containerd namespace), ``systemd_cgroup`` (runc's ``--systemd-cgroup``),
``timeout`` (seconds one run of the binary may take; default 60).
"""
from pallet.core.hookspecs import hookimpl

PALLET_ROLE = "runtime"


@hookimpl
def pallet_provide_runtime(kernel):
    from pallet.plugins.runtime_oci.runtime import OciRuntime

    cfg = kernel.plugin_config("runtime_oci")
    return OciRuntime.for_binary(str(cfg.get("binary") or "runc"),
                                 cfg.get("root") or kernel.paths.runtime_root,
                                 systemd_cgroup=bool(cfg.get("systemd_cgroup")),
                                 timeout=float(cfg.get("timeout") or 60.0))
