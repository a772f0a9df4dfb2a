"""``POST /build``'s options as dockerd 20.10 reads them from the query string
(and ``X-Registry-Config``), typed once for every builder: the builder role's
``build(engine, options, ...)`` receives a :class:`BuildOptions`."""
from __future__ import annotations

import base64
import json
from typing import Mapping, Sequence

import attrs

from pallet.core import errors


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def _int(name: str, value: str | None) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except ValueError:
        raise errors.InvalidArgument(f"strconv.ParseInt: parsing {value!r}: invalid syntax") \
            from None


def _json(value: str, what: str, kind: type):
    try:
        doc = json.loads(value)
    except ValueError as e:
        raise errors.InvalidArgument(f"error reading {what}: {e}") from None
    if not isinstance(doc, kind):
        raise errors.InvalidArgument(f"error reading {what}: json: cannot unmarshal "
                                     f"{type(doc).__name__} into Go value")
    return doc


@attrs.frozen
class BuildOptions:
    """What a build was asked to do (dockerd's ``ImageBuildOptions``)."""

    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    quiet: bool = False
    no_cache: bool = False
    remove: bool = True
    force_remove: bool = False
    pull: bool = False
    build_args: Mapping[str, str | None] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    target: str = ""
    network_mode: str = ""
    extra_hosts: tuple[str, ...] = ()
    shm_size: int = 0
    memory: int = 0
    memory_swap: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    cgroup_parent: str = ""
    ulimits: tuple = ()
    cache_from: tuple[str, ...] = ()
    platform: str = ""
    remote: str = ""
    build_id: str = ""
    #: registry host -> credentials (``X-Registry-Config``), for FROM pulls
    auth_configs: Mapping[str, object] = attrs.field(factory=dict)

    def host_config(self) -> dict:
        """The HostConfig of a step's container (dockerd's hostConfigFromOptions)."""
        host = {"NetworkMode": self.network_mode or "default",
                "ExtraHosts": list(self.extra_hosts) or None,
                # the steps' output goes to the build's stream, not to a log file
                "LogConfig": {"Type": "none", "Config": {}}}
        for key, value in (("ShmSize", self.shm_size), ("Memory", self.memory),
                           ("MemorySwap", self.memory_swap), ("CpuShares", self.cpu_shares),
                           ("CpuPeriod", self.cpu_period), ("CpuQuota", self.cpu_quota),
                           ("CpusetCpus", self.cpuset_cpus), ("CpusetMems", self.cpuset_mems),
                           ("CgroupParent", self.cgroup_parent)):
            if value:
                host[key] = value
        if self.ulimits:
            host["Ulimits"] = list(self.ulimits)
        return host

    def credentials(self, host: str):
        """The credentials ``X-Registry-Config`` gave for ``host`` (or None)."""
        return self.auth_configs.get(host)


def registry_config(header: str | None) -> dict:
    """``X-Registry-Config``: base64url JSON of registry -> auth config."""
    from pallet.distribution.auth import Credentials, normalize_server

    value = (header or "").strip()
    if not value:
        return {}
    doc = None
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            doc = json.loads(decode(value + "=" * (-len(value) % 4)))
            break
        except (ValueError, TypeError):
            continue
    if not isinstance(doc, dict):
        return {}  # dockerd ignores an undecodable header too
    out = {}
    for server, auth in doc.items():
        if not isinstance(auth, dict):
            continue
        user, password = auth.get("username") or "", auth.get("password") or ""
        if auth.get("auth") and not user:
            try:
                user, _, password = base64.b64decode(auth["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        creds = Credentials(user, password, auth.get("identitytoken") or "",
                            auth.get("registrytoken") or "")
        if creds:
            out[normalize_server(server)] = creds
    return out


def parse_query(query: Mapping[str, Sequence[str]], *, api_version: str = "1.43",
                registry_header: str | None = None) -> BuildOptions:
    """dockerd's ``newImageBuildOptions``: ``query`` maps each parameter to
    its values (``t`` and ``extrahosts`` may repeat)."""
    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    def version_at_least(v: str) -> bool:
        def t(x):
            return tuple(int(p) for p in x.split(".") if p.isdigit())
        return t(api_version) >= t(v)

    if query.get("securityopt"):
        raise errors.InvalidArgument("The daemon on this platform does not support setting "
                                     "security options on build")
    if _bool(one("squash")):
        raise errors.InvalidArgument("squash is only supported with experimental mode")
    version = one("version") or "1"
    if version not in ("1", "2"):
        raise errors.InvalidArgument(f"invalid version {version!r}")
    if version == "2":
        raise errors.InvalidArgument("builder version 2 (BuildKit) is not supported: "
                                     "this daemon builds with the classic builder")
    if one("session"):
        raise errors.InvalidArgument("experimental session with v1 builder is no longer "
                                     "supported, use builder version v2 (BuildKit) instead")
    if _bool(one("forcerm")):
        remove = True
    elif one("rm") in (None, ""):
        remove = True
    else:
        remove = _bool(one("rm"))
    shm = one("shmsize")
    isolation = one("isolation")
    if isolation and isolation not in ("default",):
        raise errors.InvalidArgument(f"unsupported isolation: \"{isolation}\"")
    kw: dict = {}
    if one("ulimits"):
        kw["ulimits"] = tuple(_json(one("ulimits"), "ulimit settings", list))
    if one("buildargs"):
        args = _json(one("buildargs"), "build args", dict)
        for k, v in args.items():
            if v is not None and not isinstance(v, str):
                raise errors.InvalidArgument(f"error reading build args: json: cannot "
                                             f"unmarshal {type(v).__name__} into Go value "
                                             "of type string")
        kw["build_args"] = args
    if one("labels"):
        labels = _json(one("labels"), "labels", dict)
        kw["labels"] = {str(k): str(v) for k, v in labels.items()}
    if one("cachefrom"):
        kw["cache_from"] = tuple(str(x) for x in _json(one("cachefrom"), "cache from", list))
    platform = one("platform") or ""
    if platform and not version_at_least("1.32"):
        platform = ""
    return BuildOptions(
        dockerfile=one("dockerfile") or "Dockerfile",
        tags=tuple(v for v in query.get("t") or () if v),
        quiet=_bool(one("q")), no_cache=_bool(one("nocache")), remove=remove,
        force_remove=_bool(one("forcerm")), pull=_bool(one("pull")),
        target=one("target") or "", network_mode=one("networkmode") or "",
        extra_hosts=tuple(query.get("extrahosts") or ()),
        shm_size=_int("shmsize", shm), memory=_int("memory", one("memory")),
        memory_swap=_int("memswap", one("memswap")),
        cpu_shares=_int("cpushares", one("cpushares")),
        cpu_period=_int("cpuperiod", one("cpuperiod")),
        cpu_quota=_int("cpuquota", one("cpuquota")),
        cpuset_cpus=one("cpusetcpus") or "", cpuset_mems=one("cpusetmems") or "",
        cgroup_parent=one("cgroupparent") or "", platform=platform,
        remote=one("remote") or "", build_id=one("buildid") or "",
        auth_configs=registry_config(registry_header), **kw)
