"""``docker rmi`` and ``docker image prune`` over containerd's images, with
dockerd's rules (``daemon/images/image_delete.go``): which references a name
or an ID removes, which containers stop a removal (running ones even when
forced), and what is reported (``Untagged``, ``Deleted``).  The last
deletion is synchronous: containerd (pallet-containerd too) collects the
blobs and snapshots nothing refers to any more before it answers."""
from __future__ import annotations

import logging
import secrets

from pallet.core import errors
from pallet.distribution.reference import Reference, familiar_name
from pallet.engine.image_filters import bool_filter, labels_match, until_time
from pallet.engine.images import DANGLING, _repository, emit

log = logging.getLogger("pallet.api_rest.images")

#: a descriptor for the scratch name of :func:`gc` when there is no image left
_NOTHING = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "0" * 64, "size": 0}


async def _delete_names(svc, names: list[str], *, sync: bool, target: dict) -> None:
    for n in names:
        try:
            await svc.ctrd.image_delete(n)
        except errors.NotFound:
            continue
    if sync:
        await gc(svc.ctrd, target)


async def delete(svc, ref: str, *, force: bool, running, sync: bool) -> list[dict]:
    """``DELETE /images/{name}``: the removal records, its events published."""
    async with svc.names_lock:
        records, image_id = await _delete(svc, ref, force, running, sync)
    for item in records:
        if item.get("Untagged"):
            emit(svc.kernel, "untag", image_id, image_id)
        if item.get("Deleted"):
            emit(svc.kernel, "delete", item["Deleted"], item["Deleted"])
    return records


async def _delete(svc, ref, force, running, sync) -> tuple[list[dict], str]:
    rec = await svc.get(ref)
    refs = rec.ref_names
    users = svc.in_use(rec.id)
    short = rec.short_id
    records: list[dict] = []
    name = None
    try:
        parsed = Reference.parse(ref)
        if str(parsed) in rec.names:
            name = str(parsed)
    except errors.InvalidArgument:
        pass
    quiet = False
    if name is not None:
        if not force and _single_reference(refs) and users:
            raise errors.Conflict(
                f'conflict: unable to remove repository reference "{ref}" (must force) - '
                f"container {users[0][:12]} is using its referenced image {short}")
        await svc.ctrd.image_delete(name)
        records.append({"Untagged": familiar_name(name)})
        refs = [n for n in refs if n != name]
        if "@" not in name:
            repo = _repository(name)
            if not any("@" not in n and _repository(n) == repo for n in refs):
                for n in [n for n in refs if "@" in n and _repository(n) == repo]:
                    await svc.ctrd.image_delete(n)
                    records.append({"Untagged": familiar_name(n)})
                    refs.remove(n)
                shown = {r["Untagged"] for r in records}
                records += [{"Untagged": d} for d in rec.repo_digests
                            if _repository(d) == repo and d not in shown]
        if refs:
            return records, rec.id
        quiet = True
    elif _single_reference(refs):
        conflict = _conflict(short, users, running, refs=[], force=force, hard_only=False)
        if conflict is not None:
            raise conflict
        for n in refs:
            await svc.ctrd.image_delete(n)
            records.append({"Untagged": familiar_name(n)})
        refs = []
    conflict = _conflict(short, users, running, refs, force, hard_only=force)
    if conflict is not None:
        if quiet and (users or refs):
            if not refs:
                # untagged while in use: it stays, nameless, as docker's <none>
                await svc.ctrd.image_put(f"{DANGLING}@{rec.target['digest']}", rec.target)
            return records, rec.id
        raise conflict
    for n in refs:
        records.append({"Untagged": familiar_name(n)})
    shown = {r["Untagged"] for r in records if "Untagged" in r}
    for d in rec.repo_digests:
        if d not in shown:
            records.append({"Untagged": d})
    await _delete_names(svc, list(rec.names), sync=sync, target=rec.target)
    records.append({"Deleted": rec.id})
    return records, rec.id


async def prune(svc, filters: dict[str, list[str]]) -> dict:
    """``docker image prune``: dangling images (``dangling=false``: every
    image no container uses), then one garbage collection."""
    for key in filters:
        if key not in ("dangling", "until", "label", "label!"):
            raise errors.InvalidArgument(f"invalid filter '{key}'")
    dangling_only = bool_filter(filters["dangling"], "dangling") \
        if "dangling" in filters else True
    until = min(until_time(v) for v in filters["until"]) if "until" in filters else None
    async with svc.names_lock:
        records = await svc.all()
        doomed = []
        for rec in records:
            if svc.in_use(rec.id):
                continue
            if dangling_only and not rec.dangling:
                continue
            if until is not None and rec.created_unix >= until:
                continue
            if "label" in filters and not labels_match(rec.image_labels, filters["label"]):
                continue
            if "label!" in filters and any(labels_match(rec.image_labels, [v])
                                           for v in filters["label!"]):
                continue
            doomed.append(rec)
        kept = {c for rec in records if rec not in doomed for c in rec.chain_ids}
        deleted: list[dict] = []
        reclaimed = 0
        counted: set[str] = set()
        for i, rec in enumerate(doomed):
            for n in rec.ref_names:
                deleted.append({"Untagged": familiar_name(n)})
            await _delete_names(svc, list(rec.names), sync=i == len(doomed) - 1,
                                target=rec.target)
            deleted.append({"Deleted": rec.id})
            for chain, size in zip(rec.chain_ids, rec.layer_sizes):
                if chain not in kept and chain not in counted:
                    counted.add(chain)
                    reclaimed += size
        if not doomed:
            await gc(svc.ctrd)  # what earlier removals or crashes left
    for rec in doomed:
        for n in rec.ref_names:
            emit(svc.kernel, "untag", rec.id, rec.id)
        emit(svc.kernel, "delete", rec.id, rec.id)
    emit(svc.kernel, "prune", "", "", reclaimed=str(reclaimed))
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


async def gc(ctrd, target: dict | None = None) -> None:
    """Have containerd collect garbage now.  containerd 1.6 has no GC call: a
    synchronous image delete is what runs one before it answers, so a scratch
    name is made (on ``target``, or on nothing) and deleted so."""
    name = f"{DANGLING}@gc-{secrets.token_hex(8)}"
    try:
        await ctrd.image_create(name, target or _NOTHING)
        await ctrd.image_delete(name, sync=True)
    except errors.PalletError as e:
        log.warning("garbage collection: %s", e)


def _single_reference(refs: list[str]) -> bool:
    """dockerd's ``isSingleReference``: at most one tag, and every digest
    reference in the same repository as it."""
    if len(refs) <= 1:
        return len(refs) == 1
    single = None
    canonical = set()
    for n in refs:
        if "@" in n:
            canonical.add(_repository(n))
        elif single is None:
            single = n
        else:
            return False
    single = single or refs[0]
    return len(canonical) == 1 and _repository(single) in canonical


def _conflict(short: str, users: list[str], running, refs: list[str], force: bool,
              hard_only: bool) -> errors.Conflict | None:
    """dockerd's ``checkImageDeleteConflict``: running containers are a hard
    conflict; remaining references and stopped containers soft ones."""
    for cid in users:
        if running(cid):
            return errors.Conflict(f"conflict: unable to delete {short} (cannot be forced) - "
                                   f"image is being used by running container {cid[:12]}")
    if hard_only:
        return None
    if refs:
        return errors.Conflict(f"conflict: unable to delete {short} (must be forced) - image "
                               "is referenced in multiple repositories")
    if users:
        return errors.Conflict(f"conflict: unable to delete {short} (must be forced) - image "
                               f"is being used by stopped container {users[0][:12]}")
    return None
