"""The steps that write files without running anything: COPY, ADD and WORKDIR.

Each works in a snapshot prepared on the stage's image and mounted in
palletd (:meth:`~pallet.engine.build_step.Session.workspace`); its changes,
taken with the diff service, are the step's layer.  COPY's cache key is
dockerd's: ``COPY [--chown=...]<file:|dir:|multi:><sum> in <dest> ``.
"""
from __future__ import annotations

import asyncio
import hashlib
import posixpath
import re
import time

import attrs

from pallet.core import errors

from pallet.plugins.builder_dockerfile import instructions as ins
from pallet.plugins.builder_dockerfile.context import REG, Entry

_WILDCARD = re.compile(r"(?<!\\)[*?\[]")


def has_wildcards(path: str) -> bool:
    return _WILDCARD.search(path) is not None


def _glob_regex(pattern: str) -> re.Pattern:
    """Go's ``filepath.Match``: ``*`` and ``?`` do not cross ``/``."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise errors.InvalidArgument("syntax error in pattern")
            body = pattern[i:j]
            if body.startswith("^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@attrs.frozen
class CopyInfo:
    """One source of a copy: where it is read from, its name there (resolved),
    the path as written (whose base name a file keeps), its checksum."""

    source: object
    name: str
    orig: str
    hash: str
    inline: bytes | None = None
    decompress: bool = False


class _InlineSource:
    """A heredoc's content as a one-file source."""

    def __init__(self, data: bytes):
        self.data = data

    def data_entry(self, entry):
        return entry

    def copy_to(self, entry, fd: int) -> None:
        import os
        view = memoryview(self.data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def read(self, entry) -> bytes:
        return self.data


def normalize_dest(workdir: str, dest: str) -> str:
    """COPY's destination: relative ones are below WORKDIR; a trailing slash stays."""
    if dest.startswith("/"):
        return dest
    out = posixpath.join("/", workdir or "", dest)
    out = posixpath.normpath(out)
    return out + "/" if dest.endswith("/") and out != "/" else out


def _not_found(path: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"file not found in build context or excluded by "
                                  f".dockerignore: stat {path}: file does not exist")


def copy_infos(src, cmd: ins.Copy, *, decompress: bool) -> list[CopyInfo]:
    """The sources of a COPY/ADD with their checksums (dockerd's calcCopyInfo)."""
    out = []
    for path in cmd.sources:
        orig = path.lstrip("/")
        if orig.startswith("./"):
            orig = orig[2:]
        if has_wildcards(orig):
            rx = _glob_regex(orig)
            found = False
            for entry in src.walk(""):
                if rx.match(entry.name):
                    found = True
                    out.append(_info(src, entry.name, entry.name, decompress))
            if not found:
                continue
            continue
        if src.lookup(orig) is None:
            raise _not_found(orig)
        out.append(_info(src, orig, orig, decompress))
    if not out and not cmd.inline:
        raise errors.InvalidArgument("no source files were specified")
    return out


def _info(src, path: str, orig: str, decompress: bool) -> CopyInfo:
    return CopyInfo(src, src.resolve(path), orig, src.source_hash(path), decompress=decompress)


def source_hash(infos: list[CopyInfo]) -> str:
    if len(infos) == 1:
        return infos[0].hash
    return "multi:" + hashlib.sha256(",".join(i.hash for i in infos).encode()).hexdigest()


async def copy_step(build, state, cmd: ins.Copy) -> None:
    """COPY and ADD (dockerd's dispatchCopy/dispatchAdd, then performCopy)."""
    session = build.session
    is_add = cmd.name == "ADD"
    infos: list[CopyInfo] = []
    src = build.context
    if cmd.from_:
        try:
            img = await build.image_or_stage(cmd.from_)
        except errors.PalletError as e:
            raise errors.InvalidArgument(f"invalid from flag value {cmd.from_}: {e.message}") \
                from None
        from pallet.plugins.builder_dockerfile.sources import DirSource
        src = DirSource(await session.view(img))
    try:
        urls = [s for s in cmd.sources if re.match(r"^https?://", s)]
        if urls and not is_add:
            raise errors.InvalidArgument("source can't be a URL for COPY")
        if urls and cmd.from_:
            raise errors.InvalidArgument("source can't be a URL with --from")
        local = attrs.evolve(cmd, sources=tuple(s for s in cmd.sources if s not in urls))
        try:
            if local.sources:
                infos += copy_infos(src, local, decompress=is_add and not cmd.from_)
            for url in urls:
                infos.append(await _download(build, url))
            if not infos and not cmd.inline:
                raise errors.InvalidArgument("no source files were specified")
        except errors.PalletError as e:
            raise errors.InvalidArgument(f"{cmd.name} failed: {e.message}") from None
        now = time.time()
        for doc in cmd.inline:
            data = doc.data.encode()
            infos.append(CopyInfo(_InlineSource(data), doc.name, doc.name,
                                  "file:" + hashlib.sha256(data).hexdigest(),
                                  inline=data))
        if len(infos) > 1 and not cmd.dest.endswith("/"):
            raise errors.InvalidArgument(f"When using {cmd.name} with more than one source "
                                         "file, the destination must be a directory and end "
                                         "with a /")
        chown = f"--chown={cmd.chown}" if cmd.chown else ""
        extras = (f"--chmod={cmd.chmod} " if cmd.chmod else "") + \
            ("--link " if cmd.link else "")
        comment = f"{cmd.name} {chown}{extras}{source_hash(infos)} in {cmd.dest} "
        probe = build.shell_comment(state, comment, split=False)
        if await build.probe(state, probe):
            return
        dest = normalize_dest(state.config.get("WorkingDir") or "", cmd.dest)
        mode = int(cmd.chmod, 8) if cmd.chmod else None
        preserve = bool(cmd.from_) and not cmd.chown
        layer = None
        link_key = ""
        if cmd.link:
            link_key = hashlib.sha256(f"{comment}|{dest}".encode()).hexdigest()
            layer = build.cache.link_layer(link_key)
            if layer is not None:
                try:
                    await session.apply(state.image, layer)
                except errors.NotFound:
                    layer = None
        if layer is None:
            ws = await session.workspace(state.image, empty=cmd.link)
            await asyncio.to_thread(_perform, ws.path, infos, dest, cmd.chown, mode, preserve,
                                    now)
            layer = await session.finish(ws, state.image)
            if cmd.link and layer is not None:
                await build.cache.store_link(session.ctrd, link_key, layer)
        await build.commit(state, probe, layer=layer)
    finally:
        if cmd.from_ and hasattr(src, "close"):
            src.close()


async def _download(build, url: str) -> CopyInfo:
    import os
    import tempfile

    from pallet.plugins.builder_dockerfile.sources import DirSource, download

    where = tempfile.mkdtemp(prefix="add-", dir=build.session.tmp)
    path, entry, sum_ = await download(url, where)
    os.rename(path, os.path.join(where, entry.name))
    src = DirSource(where)
    return CopyInfo(src, entry.name, entry.name, "file:" + sum_)


def _perform(root: str, infos: list[CopyInfo], dest: str, chown: str, mode, preserve: bool,
             now: float) -> None:
    from pallet.plugins.builder_dockerfile.copy import (
        Writer, copy_directory, copy_file, extract_archive, is_archive, parse_chown)

    w = Writer(root)
    try:
        owner = None if preserve else (parse_chown(w, chown) if chown else (0, 0))
        for info in infos:
            if info.inline is not None:
                entry = Entry(info.name, REG, 0o644, 0, 0, len(info.inline), int(now))
                target = _file_target(w, dest, info.orig)
                copy_file(w, info.source, entry, target, owner=owner or (0, 0), mode=mode)
                continue
            entry = info.source.lookup(info.name)
            if entry is None:
                raise _not_found(info.orig)
            if entry.is_dir:
                copy_directory(w, info.source, info.name, dest, owner=owner, mode=mode)
            elif info.decompress and is_archive(info.source, entry):
                extract_archive(w, info.source, entry, dest)
            else:
                copy_file(w, info.source, entry, _file_target(w, dest, info.orig),
                          owner=owner, mode=mode)
    finally:
        w.close()


def _file_target(w, dest: str, orig: str) -> str:
    resolved = w.resolve(dest)
    if dest.endswith("/") or w.is_dir(dest):
        return posixpath.join(resolved, posixpath.basename(orig.rstrip("/")))
    return resolved


async def workdir(build, state, cmd: ins.Workdir) -> None:
    """WORKDIR: the directory is made now (a layer when it was missing)."""
    if not cmd.path:
        raise errors.InvalidArgument("cannot normalize nothing")
    current = state.config.get("WorkingDir") or ""
    path = cmd.path if cmd.path.startswith("/") else \
        posixpath.join("/", current, cmd.path)
    path = posixpath.normpath(path)
    state.config["WorkingDir"] = path
    probe = build.shell_comment(state, "WORKDIR " + path, split=False)
    if await build.probe(state, probe):
        return
    ws = await build.session.workspace(state.image)
    await asyncio.to_thread(_mkdir, ws.path, path)
    layer = await build.session.finish(ws, state.image)
    await build.commit(state, probe, layer=layer)


def _mkdir(root: str, path: str) -> None:
    from pallet.plugins.builder_dockerfile.copy import Writer

    w = Writer(root)
    try:
        target = w.resolve(path)
        if w.confined.lstat([p for p in target.split("/") if p]) is not None \
                and not w.is_dir(path):
            raise errors.InvalidArgument(f"Cannot mkdir: {path} is not a directory")
        w.mkdir_all(target, (0, 0))
    finally:
        w.close()
