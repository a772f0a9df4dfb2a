"""``--cache-from``: steps taken from the history of given images (pulled
from a registry, say), as dockerd's legacy builder does: a step is reused
when the image's history up to the current step is the current image's and
its next entry was made by the same instruction (``created_by``); its
layer, if it has one, is applied on the current image."""
from __future__ import annotations

import copy

from pallet.core import errors
from pallet.engine import build_image as bi


def _valid_parent(img: bi.BuildImage, parent: bi.BuildImage) -> bool:
    ih = img.config.get("history") or []
    ph = parent.config.get("history") or []
    if not ih:
        return False
    if not ph and not parent.diff_ids:
        return True
    if len(ph) >= len(ih) or len(parent.diff_ids) > len(img.diff_ids):
        return False
    return ih[:len(ph)] == ph and img.diff_ids[:len(parent.diff_ids)] == parent.diff_ids


def _layer_index(img: bi.BuildImage, index: int) -> int | None:
    """The layer made by history entry ``index`` (None: an empty one)."""
    history = img.config.get("history") or []
    if history[index].get("empty_layer"):
        return None
    return sum(1 for h in history[:index] if not h.get("empty_layer"))


async def restore(build, state, target: bi.BuildImage, probe: dict):
    """The step made from ``target``'s history, or None."""
    parent = state.image
    n = len(parent.config.get("history") or [])
    history = target.config.get("history") or []
    if len(history) <= n or not _valid_parent(target, parent):
        return None
    entry = history[n]
    if " ".join(probe.get("Cmd") or []) != (entry.get("created_by") or ""):
        return None
    ix = _layer_index(target, n)
    layer = None
    diff_id = ""
    if ix is not None:
        if ix >= len(target.layers) or ix >= len(target.diff_ids):
            return None
        layer, diff_id = target.layers[ix], target.diff_ids[ix]
        try:
            await build.session.apply(parent, layer, diff_id)
        except errors.NotFound:
            return None
    config = {
        **{k: v for k, v in parent.config.items()
           if k in ("architecture", "os", "variant", "os.version", "os.features")},
        "config": bi.run_config(copy.deepcopy(state.config)),
        "container_config": bi.run_config(probe),
        "created": entry.get("created") or bi.now_rfc3339(),
        "docker_version": target.config.get("docker_version", ""),
        "history": [*copy.deepcopy(parent.config.get("history") or []), dict(entry)],
        "rootfs": {"type": "layers",
                   "diff_ids": parent.diff_ids + ([diff_id] if diff_id else [])},
    }
    layers = parent.layers + ((layer,) if layer is not None else ())
    img = await bi.write_image(build.session.ctrd, config, layers,
                               snapshotter=build.session.snapshotter)
    await build.cache.store(build.session.ctrd, parent.id, probe, img,
                            layer.size if layer is not None else 0)
    return img
