"""Legacy container links: ``--link NAME[:ALIAS]`` (``HostConfig.Links``).

As dockerd keeps them: at create each link names an existing container (else
400, "could not get container for NAME": a 404 would send the docker CLI off
to pull an image) and is stored as ``/CHILD:/PARENT/ALIAS``; at start every
linked container must be running (409, "Cannot link to a non running
container: /CHILD AS /PARENT/ALIAS"), and the linking container gets

* the environment of docker's links package: ``ALIAS_NAME=/PARENT/ALIAS``,
  for each exposed port ``ALIAS_PORT_N_PROTO`` (``_ADDR``, ``_PORT``,
  ``_PROTO``; ``_START``/``_END`` over runs of consecutive ports),
  ``ALIAS_PORT`` for the first one, and ``ALIAS_ENV_X`` for the linked
  container's own variables (HOME and PATH excepted);
* through the network plugin, the names ``ALIAS HOSTNAME NAME`` of each
  linked container: in /etc/hosts on the default bridge, in the embedded DNS
  on user-defined networks.

``docker ps`` lists a linked container under ``/PARENT/ALIAS`` too, and
``docker rm --link /PARENT/ALIAS`` removes a link.  Links follow neither a
rename nor a restart of the linked container (its new address reaches the
linking container when that one starts again).
"""
from __future__ import annotations

from pallet.core import errors


def parse(value) -> tuple[str, str]:
    """``NAME:ALIAS`` or ``NAME`` (the alias is then the name), leading ``/`` ignored."""
    if not isinstance(value, str) or not value.strip(":/"):
        raise errors.InvalidArgument(f"invalid link: {value!r}")
    name, _, alias = value.partition(":")
    name, alias = name.lstrip("/"), (alias or name).strip("/").rpartition("/")[2]
    if not name or not alias:
        raise errors.InvalidArgument(f"invalid link: {value!r}")
    return name, alias


def normalize(store, parent: str, host: dict) -> list[str] | None:
    """At create: the links of ``HostConfig`` checked and written as dockerd
    keeps them (``/CHILD:/PARENT/ALIAS``); None when there are none."""
    values = host.get("Links")
    if not values:
        return None
    if not isinstance(values, list):
        raise errors.InvalidArgument("invalid HostConfig.Links: a list of strings expected")
    mode = host.get("NetworkMode") or "default"
    if mode == "host":
        raise errors.InvalidArgument("conflicting options: host type networking can't be used "
                                     "with links. This would result in undefined behavior")
    if mode.startswith("container:"):
        raise errors.InvalidArgument("conflicting options: container type network can't be "
                                     "used with links. This would result in undefined "
                                     "behavior")
    out = []
    for value in values:
        name, alias = parse(value)
        try:
            child = store.get(name)
        except errors.NotFound as e:
            raise errors.InvalidArgument(f"could not get container for {name}: "
                                         f"{e.message}") from None
        if (child.data["HostConfig"].get("NetworkMode") or "") == "host":
            raise errors.InvalidArgument("conflicting options: host type networking can't be "
                                         "used with links. This would result in undefined "
                                         "behavior")
        entry = f"/{child.name}:/{parent}/{alias}"
        if entry not in out:
            out.append(entry)
    return out


def _split(entry: str) -> tuple[str, str, str]:
    """``/CHILD:/PARENT/ALIAS`` -> (child, parent, alias)."""
    child, _, full = entry.partition(":")
    parent, _, alias = full.strip("/").rpartition("/")
    return child.lstrip("/"), parent, alias


def resolve(store, c) -> list[tuple[object, str]]:
    """At start: (linked container, alias) for each link; each must be running."""
    out = []
    for entry in c.data["HostConfig"].get("Links") or ():
        name, _, alias = _split(entry)
        full = f"/{c.name}/{alias}"
        try:
            child = store.get(name)
        except errors.NotFound:
            raise errors.Conflict(f"Cannot link to /{name}, as it does not exist") from None
        if not child.running:
            raise errors.Conflict(f"Cannot link to a non running container: /{child.name} "
                                  f"AS {full}")
        out.append((child, alias))
    return out


def for_network(pairs) -> list[dict]:
    """What the network plugin is told about each link."""
    return [{"id": child.id, "name": child.name, "alias": alias,
             "hostname": child.data["Config"].get("Hostname") or child.id[:12]}
            for child, alias in pairs]


def _ports(exposed) -> list[tuple[int, str]]:
    """Exposed ports sorted as docker does: tcp first, then by number."""
    out = []
    for key in exposed or {}:
        num, _, proto = str(key).partition("/")
        if num.isdigit():
            out.append((int(num), (proto or "tcp").lower()))
    return sorted(set(out), key=lambda p: (p[1] != "tcp", p[1], p[0]))


def environment(parent: str, alias: str, ip: str, child_config: dict) -> list[str]:
    """The variables one link gives the linking container (docker's links package)."""
    name = alias.upper().replace("-", "_")
    env = []
    ports = _ports(child_config.get("ExposedPorts"))
    start = end = None
    for i, (num, proto) in enumerate(ports):
        if i == 0:
            start = end = (num, proto)
            env.append(f"{name}_PORT={proto}://{ip}:{num}")
        prefix = f"{name}_PORT_{num}_{proto.upper()}"
        env += [f"{prefix}={proto}://{ip}:{num}", f"{prefix}_ADDR={ip}",
                f"{prefix}_PORT={num}", f"{prefix}_PROTO={proto}"]
        if num == end[0] + 1 and proto == end[1]:
            end = (num, proto)
            if i < len(ports) - 1:
                continue
        if end != start:
            prefix = f"{name}_PORT_{start[0]}_{start[1].upper()}"
            env += [f"{prefix}_START={start[1]}://{ip}:{start[0]}",
                    f"{prefix}_PORT_START={start[0]}",
                    f"{prefix}_END={end[1]}://{ip}:{end[0]}",
                    f"{prefix}_PORT_END={end[0]}"]
        start = end = (num, proto)
    env.append(f"{name}_NAME=/{parent}/{alias}")
    for item in child_config.get("Env") or ():
        key, sep, value = item.partition("=")
        if sep and key not in ("HOME", "PATH"):
            env.append(f"{name}_ENV_{key}={value}")
    return env


def names_by_child(store) -> dict[str, list[str]]:
    """``{child id: ["/PARENT/ALIAS", ...]}``: the extra names ``docker ps`` shows."""
    out: dict[str, list[str]] = {}
    for c in store.all():
        for entry in c.data["HostConfig"].get("Links") or ():
            name, parent, alias = _split(entry)
            cid = store.names.get(name)
            if cid is not None:
                out.setdefault(cid, []).append(f"/{parent}/{alias}")
    return out


def remove(store, ref: str):
    """``DELETE /containers/PARENT/ALIAS?link=1``: drop that link from its
    container; returns the container to save."""
    ref = "/" + ref.strip("/")
    parent, _, alias = ref[1:].rpartition("/")
    if not parent:
        raise errors.Conflict("Conflict, cannot remove the default link name of the container")
    try:
        c = store.get(parent)
    except errors.NotFound:
        raise errors.NotFound(f"No such container: {parent}") from None
    links = c.data["HostConfig"].get("Links") or []
    kept = [e for e in links if _split(e)[2] != alias]
    if len(kept) == len(links):
        raise errors.NotFound(f"Could not find entity for {ref}")
    c.data["HostConfig"]["Links"] = kept or None
    return c
