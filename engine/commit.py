"""``docker commit`` (``POST /commit``): a container's own layer becomes an
image on top of the container's image.

As dockerd: the container is paused meanwhile (unless ``pause=0``), the
config is the request's (or the container's), changed by the ``changes``
(Dockerfile instructions: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME, WORKDIR) and completed from the container's; the
layer is the container's changes against its init layer, taken with
containerd's Diff service (none when nothing changed: an ``empty_layer``
history entry); the image is written and named through containerd's
Content and Images services.
"""
from __future__ import annotations

import contextlib
import copy

from pallet.core import errors


def merge(user: dict, base: dict) -> dict:
    """dockerd's commit merge: what the new config leaves empty comes from
    the container's."""
    out = dict(user)
    if not out.get("User"):
        out["User"] = base.get("User", "")
    ports = dict(out.get("ExposedPorts") or {})
    for p in base.get("ExposedPorts") or {}:
        ports.setdefault(p, {})
    out["ExposedPorts"] = ports or None
    env = list(out.get("Env") or [])
    keys = {e.partition("=")[0] for e in env}
    env += [e for e in base.get("Env") or [] if e.partition("=")[0] not in keys]
    out["Env"] = env or None
    labels = dict(out.get("Labels") or {})
    for k, v in (base.get("Labels") or {}).items():
        labels.setdefault(k, v)
    out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = base.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = base.get("Entrypoint")
    if base.get("Healthcheck") and not out.get("Healthcheck"):
        out["Healthcheck"] = base["Healthcheck"]
    if not out.get("WorkingDir"):
        out["WorkingDir"] = base.get("WorkingDir", "")
    vols = dict(out.get("Volumes") or {})
    vols.update(base.get("Volumes") or {})
    out["Volumes"] = vols or None
    if not out.get("StopSignal"):
        out["StopSignal"] = base.get("StopSignal")
    return out


async def commit(engine, ref: str, *, repo: str = "", tag: str = "", comment: str = "",
                 author: str = "", pause: bool = True, changes=(), config: dict | None = None
                 ) -> str:
    """Commit container ``ref``; the new image's ID."""
    from pallet.engine import build_image as bi
    from pallet.engine.build_step import Session
    from pallet.engine.images import DANGLING
    from pallet.imagestore.imageops import parse_changes

    containers = engine.containers
    if not ref:
        raise errors.NotFound("No such container: ")
    c = containers.get(ref)
    if c.state.get("Dead"):
        raise errors.Conflict(f"You cannot commit container {c.id} which is Dead")
    if c.removing:
        raise errors.Conflict(f"You cannot commit container {c.id} which is being removed")
    base = copy.deepcopy(c.data["Config"])
    new = merge(parse_changes(changes or (), config if config is not None else base), base)
    parent = bi.from_record(await engine.images.get(c.data["Image"]))
    paused = False
    session = await Session(engine).open()
    try:
        if pause and c.running and not c.paused:
            await containers.pause(c.id)
            paused = True
        try:
            layer = await session.container_layer(c.id, parent)
        finally:
            if paused:
                with contextlib.suppress(errors.PalletError):
                    await containers.unpause(c.id)
        cfg = bi.child_config(parent, new, base, diff_id=layer.digest if layer else None,
                              author=author, comment=comment, container=c.id)
        img = await bi.write_image(session.ctrd, cfg,
                                   parent.layers + ((layer,) if layer else ()),
                                   snapshotter=session.snapshotter)
        await engine.images.repoint(f"{DANGLING}@{img.manifest.digest}",
                                    img.manifest.to_oci())
        ref = ""
        if repo:  # as dockerd: the image is made first, then tagged (which may fail)
            from pallet.distribution.reference import familiar_name
            ref = familiar_name(await engine.images.tag(img.id, repo, tag or None))
    finally:
        await session.close()
    containers.emit(c, "commit", comment=comment, imageID=img.id, imageRef=ref)
    return img.id
