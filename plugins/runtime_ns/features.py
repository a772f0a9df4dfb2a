"""``pallet-runc features``: what this runtime implements, in the shape of the
runtime-spec's features-schema.json (features.md)."""
from __future__ import annotations

from pallet.plugins.runtime_ns.mounts import _FLAGS, _PROPAGATION


def features() -> dict:
    from pallet.plugins.runtime_ns import seccomp
    from pallet.commands.runc import SPEC_VERSION
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(set(_FLAGS) | set(_PROPAGATION)),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": list(_capabilities()),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {
                "enabled": True,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": list(seccomp.OPS),
                "archs": sorted(seccomp.ARCHES),
                "knownFlags": sorted(seccomp.FLAGS),
                "supportedFlags": sorted(seccomp.FLAGS),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
        },
        "annotations": {
            "org.pallet.runtime.name": "pallet-runc",
            "org.pallet.init": "builtin: PID 1 is pallet's init (init_tini)",
        },
    }


def _capabilities():
    from pallet.plugins.runtime_ns.linux import CAPABILITIES, last_cap
    return CAPABILITIES[:last_cap() + 1]
