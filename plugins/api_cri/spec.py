"""The OCI runtime spec of a pod's container, as containerd's CRI plugin
builds it (``pkg/cri/server/container_create_linux.go`` and
``pkg/cri/opts/spec_linux.go``):

* the process: the image's Entrypoint and Cmd merged with the request's
  command and args as kubelet expects (command replaces the entrypoint and
  drops the image's Cmd; args alone replace the Cmd), ``HOSTNAME``, the
  default ``PATH``, the image's environment then the request's (a later
  value of a name replaces an earlier one in place), the working directory,
  the user and groups, ``TERM`` with a terminal;
* the default mounts, the pod's /etc/hostname, /etc/hosts, /etc/resolv.conf
  and /dev/shm unless the request mounts its own, then the request's
  mounts (read-only, propagation, ordered parents first);
* the pod's namespaces joined by path, a PID namespace of the container's
  own unless the pod's, the node's or another container's is asked for;
* resources, devices, security (:mod:`.security`), the cgroup under the
  pod's parent, and containerd's annotations.
"""
from __future__ import annotations

import os

from pallet.core.errors import InvalidArgument, NotFound
from pallet.engine import spec as dockerspec
from pallet.oci.spec import device_node
from pallet.proto.cri.runtime.v1 import api_pb2 as cri

from pallet.plugins.api_cri import security

DEFAULT_PATH = "PATH=" + dockerspec.DEFAULT_PATH
SHM_SIZE = 64 * 1024 * 1024
ETC_HOSTNAME, ETC_HOSTS, RESOLV_CONF, DEV_SHM = ("/etc/hostname", "/etc/hosts",
                                                 "/etc/resolv.conf", "/dev/shm")

# containerd's annotations (pkg/cri/annotations)
CONTAINER_TYPE = "io.kubernetes.cri.container-type"
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory"
CONTAINER_NAME = "io.kubernetes.cri.container-name"
IMAGE_NAME = "io.kubernetes.cri.image-name"

_PROPAGATION = {cri.PROPAGATION_PRIVATE: "rprivate", cri.PROPAGATION_HOST_TO_CONTAINER: "rslave",
                cri.PROPAGATION_BIDIRECTIONAL: "rshared"}


def _text(value) -> str:
    """KeyValue.value is bytes in cri-api v0.36 (text in earlier versions)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def process_args(config: cri.ContainerConfig, image: dict) -> list[str]:
    """kubelet's command/args merged with the image's Entrypoint/Cmd."""
    command, args = list(config.command), list(config.args)
    if not command:
        if not args:
            args = list(image.get("Cmd") or ())
        command = list(image.get("Entrypoint") or ())
    out = command + args
    if not out:
        raise InvalidArgument("no command specified")
    return out


def merge_env(env: list[str], more) -> list[str]:
    """containerd's WithEnv: each ``KEY=value`` replaces the entry of that key
    where it is, or is appended."""
    out = list(env)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(out)}
    for item in more:
        key = item.split("=", 1)[0]
        if key in index:
            out[index[key]] = item
        else:
            index[key] = len(out)
            out.append(item)
    return out


def default_mounts() -> list[dict]:
    """containerd's default mounts with the cgroup file system read-only (CRI
    mounts it as docker does); /dev/shm is the pod's, bound later."""
    mounts = [m for m in dockerspec.default_mounts(SHM_SIZE) if m["destination"] != DEV_SHM]
    for m in mounts:
        if m["destination"] == "/sys/fs/cgroup":
            m["options"] = ["nosuid", "noexec", "nodev", "relatime", "ro"]
    return mounts


def _mount_of(path: str) -> tuple[str, str]:
    """The mount point holding ``path`` and its optional fields (propagation)."""
    best, fields = "/", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left = line.split(" - ", 1)[0].split()
            point = left[4]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and \
                    len(point) >= len(best):
                best, fields = point, " ".join(left[6:])
    return best, fields


def _check_propagation(src: str, mode: int) -> None:
    if mode == cri.PROPAGATION_PRIVATE:
        return
    point, fields = _mount_of(src)
    shared = "shared:" in fields
    if mode == cri.PROPAGATION_BIDIRECTIONAL and not shared:
        raise InvalidArgument(f"path {src!r} is mounted on {point!r} but it is not a shared "
                              "mount")
    if mode == cri.PROPAGATION_HOST_TO_CONTAINER and not (shared or "master:" in fields):
        raise InvalidArgument(f"path {src!r} is mounted on {point!r} but it is not a shared "
                              "or slave mount")


def cri_mount(m: cri.Mount, source: str | None = None) -> dict:
    """One request mount as an OCI bind mount; the host path must exist."""
    if not m.container_path:
        raise InvalidArgument("mount container path must not be empty")
    src = source if source is not None else m.host_path
    if source is None:
        if not src:
            raise InvalidArgument(f"mount {m.container_path}: host path must not be empty")
        if not os.path.exists(src):
            raise NotFound(f"failed to mount {src!r}: host path does not exist")
        src = os.path.realpath(src)   # a symlink is followed, as the API asks
    options = ["rbind", _PROPAGATION.get(m.propagation, "rprivate")]
    if source is None:
        _check_propagation(src, m.propagation)
    if m.recursive_read_only:
        if not m.readonly or m.propagation != cri.PROPAGATION_PRIVATE:
            raise InvalidArgument("recursive read-only mount needs readonly and private "
                                  "propagation")
        options.append("rro")
    options.append("ro" if m.readonly else "rw")
    return {"destination": m.container_path, "type": "bind", "source": src,
            "options": options}


def ordered(mounts: list[dict]) -> list[dict]:
    """Parents before children: by the number of path components (stable)."""
    return sorted(mounts, key=lambda m: len([p for p in m["destination"].split("/") if p]))


def devices(config: cri.ContainerConfig) -> tuple[list[dict], list[dict]]:
    """``linux.devices`` and their cgroup rules for the requested host devices
    (a directory brings every device below it)."""
    nodes, rules = [], []
    for d in config.devices:
        if not d.host_path:
            raise InvalidArgument("device host path must not be empty")
        found = []
        host = os.path.realpath(d.host_path)
        if os.path.isdir(host):
            for dirpath, _dirs, files in os.walk(host):
                for name in sorted(files):
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, host)
                    found.append((path, os.path.join(d.container_path or d.host_path, rel)))
        else:
            found.append((host, d.container_path or d.host_path))
        for path, target in found:
            try:
                st = os.stat(path)
            except OSError as e:
                raise NotFound(f"failed to add device {d.host_path!r}: "
                               f"{(e.strerror or str(e)).lower()}") from None
            node = device_node(st, target)
            if node is None:
                if os.path.isdir(host):
                    continue
                raise InvalidArgument(f"failed to add device {d.host_path!r}: not a device node")
            nodes.append(node)
            rules.append({"allow": True, "type": node["type"], "major": node["major"],
                          "minor": node["minor"], "access": d.permissions or "rwm"})
    return nodes, rules


def resources(res: cri.LinuxContainerResources | None, *, swap: bool = True) -> dict:
    """OCI ``linux.resources`` (without devices) from CRI's resources."""
    if res is None:
        return {}
    out: dict = {}
    cpu = {}
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    mem = {}
    if res.memory_limit_in_bytes:
        mem["limit"] = res.memory_limit_in_bytes
        if not res.memory_swap_limit_in_bytes and swap:
            # swap equal to the limit: no swapping by default, as containerd does
            mem["swap"] = res.memory_limit_in_bytes
    if res.memory_swap_limit_in_bytes and swap:
        mem["swap"] = res.memory_swap_limit_in_bytes
    if mem:
        out["memory"] = mem
    if res.hugepage_limits:
        out["hugepageLimits"] = [{"pageSize": h.page_size, "limit": h.limit}
                                 for h in res.hugepage_limits]
    if res.unified:
        out["unified"] = dict(res.unified)
    return out


def own_oom_score_adj() -> int:
    """This process's OOM score adjustment (containers may not go below it when
    ``restrict_oom_score_adj`` is set, as for a containerd run without privileges)."""
    try:
        with open("/proc/self/oom_score_adj") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def container_spec(*, cid: str, config: cri.ContainerConfig, sandbox, image: dict,
                   image_name: str, rootfs_dirs, hostname: str, pod_files: dict,
                   namespaces: dict, cgroups_path: str, cgroup_v2: bool,
                   restrict_oom_score_adj: bool = False, swap: bool = True) -> dict:
    """The whole spec.  ``image`` is the image config's ``config`` object;
    ``pod_files`` maps /etc/hostname, /etc/hosts, /etc/resolv.conf and
    /dev/shm to the pod's files; ``namespaces`` the type -> path the
    container joins (a type mapped to "" is new, an absent one the host's)."""
    sc = config.linux.security_context
    sb_sc = sandbox.config.linux.security_context
    security.check_unsupported(sc)
    if sc.privileged and not sb_sc.privileged:
        raise InvalidArgument("no privileged container allowed in sandbox")
    env = [DEFAULT_PATH]
    if config.tty:
        env = merge_env(env, ["TERM=xterm"])
    env = merge_env(env, [f"HOSTNAME={hostname}"])
    env = merge_env(env, list(image.get("Env") or ()) +
                    [f"{e.key}={_text(e.value)}" for e in config.envs])
    cwd = config.working_dir or image.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"working directory {cwd!r} is not an absolute path")
    caps = security.capabilities(sc)
    process = {"terminal": bool(config.tty), "args": process_args(config, image), "env": env,
               "cwd": cwd, "user": security.user(sc, image.get("User") or "", rootfs_dirs),
               "capabilities": caps, "noNewPrivileges": bool(sc.no_new_privs)}
    oom = config.linux.resources.oom_score_adj if config.linux.HasField("resources") else 0
    if restrict_oom_score_adj:
        oom = max(oom, own_oom_score_adj())
    if oom:
        process["oomScoreAdj"] = int(oom)
    asked = {m.container_path for m in config.mounts}
    mounts = default_mounts()
    for dest, src in pod_files.items():
        if dest not in asked and src:
            opts = ["rbind", "rprivate", "ro" if sc.readonly_rootfs and dest != DEV_SHM
                    else "rw"]
            mounts.append({"destination": dest, "type": "bind", "source": src, "options": opts})
    requested = [cri_mount(m) for m in config.mounts if m.host_path or not m.HasField("image")]
    mounts = [m for m in mounts if m["destination"] not in asked] + requested
    dev_nodes, dev_rules = devices(config)
    res = resources(config.linux.resources if config.linux.HasField("resources") else None,
                    swap=swap)
    res["devices"] = [dict(r) for r in dockerspec.DEFAULT_DEVICE_RULES] + dev_rules
    ns = [{"type": "mount"}]
    for kind in ("network", "ipc", "uts", "pid"):
        if kind in namespaces:
            entry = {"type": kind}
            if namespaces[kind]:
                entry["path"] = namespaces[kind]
            ns.append(entry)
    if cgroup_v2 and not sc.privileged:
        ns.append({"type": "cgroup"})
    linux = {"namespaces": ns, "resources": res, "devices": dev_nodes,
             "maskedPaths": list(sc.masked_paths), "readonlyPaths": list(sc.readonly_paths)}
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    sec = security.seccomp(sc, caps["bounding"])
    if sec is not None:
        linux["seccomp"] = sec
    md = sandbox.config.metadata
    annotations = {CONTAINER_TYPE: "container", SANDBOX_ID: sandbox.id,
                   SANDBOX_NAMESPACE: md.namespace, SANDBOX_NAME: md.name,
                   SANDBOX_UID: md.uid, CONTAINER_NAME: config.metadata.name,
                   IMAGE_NAME: image_name}
    spec = {"ociVersion": "1.0.2-dev", "process": process,
            "root": {"path": "rootfs", "readonly": bool(sc.readonly_rootfs)},
            "mounts": ordered(mounts), "annotations": annotations, "linux": linux}
    if sc.privileged:
        security.apply_privileged(spec)
    return spec


def pod_spec(sandbox, hostname: str) -> dict:
    """The spec recorded for a pod without a task (what ``ctr c info`` shows):
    its hostname, namespaces, sysctls and annotations."""
    md = sandbox.config.metadata
    ns = [{"type": k, "path": p} for k, p in sorted(sandbox.namespaces.items()) if p]
    linux = {"namespaces": ns, "sysctl": dict(sandbox.config.linux.sysctls)}
    if sandbox.cgroup_parent:
        linux["cgroupsPath"] = sandbox.cgroup_parent
    return {"ociVersion": "1.0.2-dev", "hostname": hostname, "root": {"path": "rootfs"},
            "annotations": {CONTAINER_TYPE: "sandbox", SANDBOX_ID: sandbox.id,
                            SANDBOX_NAMESPACE: md.namespace, SANDBOX_NAME: md.name,
                            SANDBOX_UID: md.uid,
                            SANDBOX_LOG_DIR: sandbox.config.log_directory},
            "linux": linux}
