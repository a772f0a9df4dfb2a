"""The ``builder`` role's object: ``docker build`` of a Dockerfile, in palletd.

One build: receive the context (the request body, or ``remote``: a tarball,
a Dockerfile or a git repository), find and parse the Dockerfile, run it
(:mod:`.dispatch`) in a :class:`~pallet.engine.build_step.Session`, name the
image, then undo the session whatever happened.  Builds started with a
``buildid`` can be cancelled by it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import time

from pallet.core import errors

log = logging.getLogger("pallet.builder")

_GIT = re.compile(r"^(git://|git@|github\.com/)|^https?://.*\.git(#.*)?$")


class DockerfileBuilder:
    """Dockerfile builds over the engine library (see the module doc)."""

    def __init__(self, kernel, config: dict | None = None):
        self.kernel = kernel
        self.config = dict(config or {})
        self.builds: dict[str, asyncio.Task] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self._cache = None

    def cache(self):
        from pallet.plugins.builder_dockerfile.cache import BuildCache

        if self._cache is None:
            self._cache = BuildCache(os.path.join(self.kernel.paths.data_root, "builder"))
        return self._cache

    async def start(self, engine) -> None:
        """Remove what builds that palletd's end interrupted left behind."""
        from pallet.engine.build_step import recover

        removed = await recover(engine)
        if removed:
            log.info("removed %d leftovers of interrupted builds", len(removed))

    def cancel(self, build_id: str) -> bool:
        task = self.builds.get(build_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def build(self, engine, options, context, progress) -> str:
        """One build (``options``: :class:`pallet.engine.build_options.BuildOptions`)."""
        from pallet.engine.build_step import Session
        from pallet.plugins.builder_dockerfile.output import Output

        out = Output(progress, options.quiet)
        if options.build_id:
            if options.build_id in self.builds:
                raise errors.Conflict(f"build with id {options.build_id} is already running")
            self.builds[options.build_id] = asyncio.current_task()
        tags = _check_tags(options.tags)
        session = Session(engine)
        ctx = None
        started = time.monotonic()
        try:
            await session.open()
            ctx = await self._context(session, options, context)
            received = time.monotonic()
            img = await self._run(engine, session, options, ctx, out)
            log.debug("build %s: context %.3fs, steps %.3fs", session.id,
                      received - started, time.monotonic() - received)
            for ref in tags:
                await engine.images.repoint(str(ref), img.manifest.to_oci())
            if not tags:
                from pallet.engine.images import DANGLING
                await engine.images.repoint(f"{DANGLING}@{img.manifest.digest}",
                                            img.manifest.to_oci())
            out.write(f"Successfully built {img.id.partition(':')[2][:12]}\n")
            for ref in tags:
                from pallet.engine.images import emit
                emit(self.kernel, "tag", img.id, ref.familiar, img.run_config.get("Labels"))
                out.write(f"Successfully tagged {ref.familiar}\n")
            if options.quiet:
                progress({"stream": img.id + "\n"})
            return img.id
        except asyncio.CancelledError:
            raise
        except BaseException:
            if options.quiet:
                out.release()
            raise
        finally:
            if options.build_id:
                self.builds.pop(options.build_id, None)
            if ctx is not None:
                ctx.close()
            cleanup = asyncio.ensure_future(session.close())
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                await cleanup
                raise

    async def _run(self, engine, session, options, ctx, out):
        from pallet.plugins.builder_dockerfile.dispatch import Build
        from pallet.plugins.builder_dockerfile.dockerfile import ParseError, parse
        from pallet.engine import build_image as bi

        name, text = find_dockerfile(ctx, options.dockerfile)
        try:
            parsed = parse(text)
        except ParseError as e:
            raise errors.InvalidArgument(f"failed to parse {name}: {e.message}") from None
        for warning in parsed.warnings:
            out.write(warning + "\n")
        cache_from = []
        for ref in options.cache_from:
            try:
                cache_from.append(bi.from_record(await engine.images.get(ref)))
            except errors.PalletError as e:
                log.warning("cache-from image %s: %s", ref, e)
        build = Build(engine, session, options, ctx, parsed, self.cache(), out,
                      cache_from=cache_from, locks=self.locks)
        return await build.run()

    async def _context(self, session, options, body):
        from pallet.plugins.builder_dockerfile.context import Context

        spool = os.path.join(session.data_tmp, "context.tar")
        if not options.remote:
            return await Context.receive(body, spool)
        # the body is not used when the context is remote; read it away
        async for _ in body:
            pass
        if _GIT.match(options.remote):
            return await _git_context(options.remote, session, spool)
        if re.match(r"^https?://", options.remote):
            return await Context.receive(_fetch(options.remote), spool)
        raise errors.InvalidArgument(f"remoteURL ({options.remote}) could not be recognized "
                                     "as URL")

    async def prune(self, engine, options) -> dict:
        """``POST /build/prune``: drop cache entries, then collect garbage."""
        from pallet.engine.image_remove import gc

        filters = options.get("filters") or {}
        until = None
        for value in filters.get("until") or ():
            from pallet.engine.image_filters import until_time
            until = until_time(value)
        ids, size = await self.cache().prune(engine.ctrd, all_=bool(options.get("all")),
                                             keep_storage=int(options.get("keep_storage") or 0),
                                             until=until)
        await gc(engine.ctrd)
        return {"CachesDeleted": ids or None, "SpaceReclaimed": size}


def _check_tags(tags):
    from pallet.distribution.reference import Reference

    out = []
    for tag in tags:
        try:
            ref = Reference.parse(tag)
        except errors.InvalidArgument as e:
            raise errors.InvalidArgument(e.message) from None
        if ref.digest:
            raise errors.InvalidArgument("build tag cannot contain a digest")
        out.append(ref)
    return out


def find_dockerfile(ctx, name: str) -> tuple[str, bytes]:
    """The Dockerfile's name and text (``Dockerfile`` falls back to
    ``dockerfile``); it and .dockerignore leave the context when
    .dockerignore excludes them, as dockerd does."""
    from pallet.engine.build_ignore import PatternMatcher, read_patterns

    name = name or "Dockerfile"
    if ctx.dockerfile_only:
        entry = next(e for n, e in ctx.entries.items() if n)
        return name, ctx.read(entry)
    entry = ctx.lookup(name)
    if (entry is None or entry.is_dir) and name == "Dockerfile":
        entry = ctx.lookup("dockerfile")
        if entry is not None:
            name = "dockerfile"
    if entry is None or entry.is_dir:
        raise errors.InvalidArgument(f"Cannot locate specified Dockerfile: {name}")
    text = ctx.read(entry)
    if not text:
        raise errors.InvalidArgument(f"the Dockerfile ({name}) cannot be empty")
    ignore = ctx.lookup(".dockerignore")
    if ignore is not None and not ignore.is_dir:
        matcher = PatternMatcher(read_patterns(ctx.read(ignore)))
        for path in (".dockerignore", name):
            if matcher.matches(path):
                ctx.remove(path)
    return name, text


async def _fetch(url: str):
    """The body of ``url``, chunk by chunk (a remote context)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=3600, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.get(url) as resp:
                if resp.status >= 400:
                    raise errors.InvalidArgument(
                        f"error downloading remote context {url}: {resp.status} {resp.reason}")
                async for chunk in resp.content.iter_chunked(1 << 20):
                    yield chunk
        except aiohttp.ClientError as e:
            raise errors.InvalidArgument(f"error downloading remote context {url}: {e}") \
                from None


async def _git_context(url: str, session, spool: str):
    """A git repository (``url#ref:subdir``) cloned and made a context."""
    import tarfile

    from pallet.plugins.builder_dockerfile.context import Context

    repo, _, fragment = url.partition("#")
    ref, _, subdir = fragment.partition(":")
    dest = os.path.join(session.data_tmp, "git")
    argv = ["git", "clone", "--quiet", "--depth", "1", "--recurse-submodules"]
    if ref:
        argv += ["--branch", ref]
    proc = await asyncio.create_subprocess_exec(*argv, "--", repo, dest,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise errors.InvalidArgument(f"unable to prepare context: unable to 'git clone' to "
                                     f"temporary context directory: error fetching: "
                                     f"{err.decode(errors='replace').strip()}")
    root = os.path.realpath(os.path.join(dest, subdir)) if subdir else dest
    if not root.startswith(os.path.realpath(dest)):
        raise errors.InvalidArgument(f"subdirectory {subdir} is outside the repository")

    def pack():
        with tarfile.open(spool + ".src", "w", format=tarfile.PAX_FORMAT) as tf:
            for name in sorted(os.listdir(root)):
                if name != ".git":
                    tf.add(os.path.join(root, name), arcname=name)
        with open(spool + ".src", "rb") as f:
            return Context.from_stream(f, spool)
    return await asyncio.to_thread(pack)
