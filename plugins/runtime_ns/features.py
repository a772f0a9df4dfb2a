"""``pallet-runc features``: what this runtime implements, with the keys of runc
1.1's document (runtime-spec's features.md; runc has no intelRdt or rdma
keys yet) and pallet's values."""
from __future__ import annotations

from pallet.plugins.runtime_ns.mounts import _FLAGS, _PROPAGATION


def features() -> dict:
    from pallet.oci.spec import SPEC_VERSION
    from pallet.plugins.runtime_ns import seccomp
    from pallet.plugins.runtime_ns.linux import CAPABILITIES, last_cap
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(set(_FLAGS) | set(_PROPAGATION)),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": list(CAPABILITIES[:last_cap() + 1]),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": list(seccomp.OPS),
                "archs": sorted(seccomp.ARCHES),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "org.pallet.runtime.name": "pallet-runc",
            "org.pallet.init": "builtin: PID 1 is pallet's init (init_tini)",
        },
    }
