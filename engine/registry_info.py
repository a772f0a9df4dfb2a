"""Registry look-ups dockerd answers without pulling: ``GET
/distribution/{name}/json`` (the manifest's descriptor and the platforms it
serves) and ``GET /images/search`` (the registry's v1 search).

Both ask the registry the reference names, with the daemon's registry
options and the client's credentials, as dockerd does.
"""
from __future__ import annotations

import json
import logging

from pallet.core import errors
from pallet.distribution.reference import Reference

log = logging.getLogger("pallet.engine.registry_info")

_INDEX_TYPES = ("application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.oci.image.index.v1+json")
#: the keys of an OCI platform as dockerd marshals them (empty ones left out)
_PLATFORM_KEYS = ("architecture", "os", "os.version", "os.features", "variant")


def _platform(obj: dict) -> dict:
    return {k: obj[k] for k in _PLATFORM_KEYS if obj.get(k)}


async def distribution_info(dist, name: str, creds) -> dict:
    """``{"Descriptor": {...}, "Platforms": [...]}`` for the image ``name``
    (a tag or a digest) in its registry."""
    try:
        ref = Reference.parse(name)
    except errors.InvalidArgument as e:
        raise errors.InvalidArgument(e.message) from None
    async with dist.registry(creds) as registry:
        manifest = await registry.get_manifest(ref.domain, ref.path, ref.digest or ref.tag,
                                               display=str(ref))
        desc = manifest.descriptor
        body = json.loads(manifest.data)
        platforms = []
        if desc.media_type in _INDEX_TYPES or body.get("manifests") is not None:
            for m in body.get("manifests") or ():
                if isinstance(m, dict) and isinstance(m.get("platform"), dict):
                    platforms.append(_platform(m["platform"]))
        else:
            cfg = body.get("config") or {}
            from pallet.core.models import Descriptor

            blob = Descriptor(cfg.get("mediaType", ""), cfg.get("digest", ""),
                              int(cfg.get("size") or 0))
            stream = await registry.open_blob(ref.domain, ref.path, blob)
            try:
                data = b"".join([c async for c in stream.chunks()])
            finally:
                stream.close()
            platforms.append(_platform(json.loads(data)))
    return {"Descriptor": {"mediaType": desc.media_type, "digest": desc.digest,
                           "size": desc.size},
            "Platforms": platforms}


SEARCH_FILTERS = ("is-automated", "is-official", "stars")


def _search_filters(filters: dict) -> dict:
    out = {}
    for key, values in filters.items():
        if key not in SEARCH_FILTERS:
            raise errors.InvalidArgument(f"invalid filter '{key}'")
        for v in values:
            if key == "stars":
                try:
                    out["stars"] = max(out.get("stars", 0), int(v))
                except ValueError:
                    raise errors.InvalidArgument(f"invalid filter 'stars={v}'") from None
            elif v in ("true", "1", "false", "0"):
                out[key] = v in ("true", "1")
            else:
                raise errors.InvalidArgument(f"invalid filter '{key}={v}'")
    return out


def _search_target(term: str) -> tuple[str, str]:
    """(registry host, query) of a search term: ``host:5000/name`` asks that
    registry for ``name``; anything else asks Docker Hub's index."""
    first, sep, rest = term.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "index.docker.io", term


async def search(dist, term: str, limit: int | None, filters: dict, creds) -> list[dict]:
    """``GET /images/search``: the registry's v1 search results, filtered."""
    import aiohttp

    if not term:
        raise errors.InvalidArgument("term is required")
    wanted = _search_filters(filters)
    limit = 25 if not limit else limit
    if not 1 <= limit <= 100:
        raise errors.InvalidArgument(f"Limit {limit} is outside the range of [1, 100]")
    host, query = _search_target(term)
    async with dist.registry(creds) as registry:
        session = registry._get_session()
        if host == "index.docker.io":
            bases = [("https://index.docker.io", None)]
        else:
            bases = [(ep.base, ep.ssl) for ep in registry.endpoints(host)]
        tried = []
        for base, ssl in bases:
            url = f"{base}/v1/_ping"
            try:
                if host != "index.docker.io":
                    # dockerd pings the v1 endpoint first; only a connection that
                    # fails rules it out (a registry without v1 says 404 and is
                    # taken for a standalone one)
                    async with session.get(f"{base}/v1/_ping", ssl=ssl) as resp:
                        await resp.read()
                url = f"{base}/v1/search"
                async with session.get(url, params={"q": query, "n": str(limit)},
                                       ssl=ssl) as resp:
                    data = await resp.read()
                    status = resp.status
                if status != 200:
                    raise errors.PalletError(f"Unexpected status code {status}")
                results = json.loads(data).get("results") or []
                break
            except (aiohttp.ClientError, OSError, ValueError) as e:
                what = "HTTPS" if base.startswith("https") else "HTTP"
                tried.append(f'{what} attempt: Get "{url}": {e}')
        else:
            if host == "index.docker.io":
                raise errors.PalletError(tried[-1].split(": ", 1)[1] if tried else
                                         "search: no answer")
            raise errors.PalletError(f'invalid registry endpoint "http://{host}/v1/". '
                                     + ". ".join(tried))
    out = []
    for r in results:
        if not isinstance(r, dict):
            continue
        entry = {"star_count": int(r.get("star_count") or 0),
                 "is_official": bool(r.get("is_official")),
                 "name": r.get("name", ""), "is_automated": bool(r.get("is_automated")),
                 "description": r.get("description", "")}
        if "is-official" in wanted and entry["is_official"] != wanted["is-official"]:
            continue
        if "is-automated" in wanted and entry["is_automated"] != wanted["is-automated"]:
            continue
        if entry["star_count"] < wanted.get("stars", 0):
            continue
        out.append(entry)
    return out[:limit]
