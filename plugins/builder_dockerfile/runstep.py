"""RUN: a container of the engine on the stage's image, through the whole
chain (pallet-containerd, a shim, the configured runtime), its output in the
build's stream, its changes the step's layer.

As dockerd's legacy builder: the build arguments are in its environment
and, when there are any, in its cache key and history (``|1 A=b /bin/sh -c
...``); a failing command is ``The command '...' returned a non-zero code:
N`` and its container is kept (unless ``forcerm``).  As BuildKit: heredocs
(one alone runs as a script, ``#!`` ones as a file at /dev/pipes), and
``--mount`` of a cache directory kept across builds (``sharing=locked``
serialises its users), a tmpfs, or a bind of the context, a stage or an
image (read-only, or writable over an overlay whose changes are dropped),
``--network=none|host``.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import os
import posixpath
import tempfile

from pallet.core import errors
from pallet.engine import build_image as bi

from pallet.plugins.builder_dockerfile import instructions as ins
from pallet.plugins.builder_dockerfile.dockerfile import parse_heredoc
from pallet.plugins.builder_dockerfile.output import StepFailed


def prepend_env(args, build_args: list[str], cmd: list[str]) -> list[str]:
    """dockerd's prependEnvOnCmd: ``|N K=v ...`` before the command, only
    the arguments a step may depend on (declared ones; proxies only if declared)."""
    keep = sorted(e for e in build_args if args.is_referenced_or_not_builtin(e.partition("=")[0]))
    return [f"|{len(keep)}", *keep, *cmd]


def command_line(state, cmd: ins.Run) -> tuple[list[str], tuple[str, str] | None]:
    """The step's command (with the SHELL in front for the shell form), and
    a script for /dev/pipes when a lone heredoc starts with ``#!``."""
    args = list(cmd.cmd or [])
    prepend = cmd.prepend_shell
    script = None
    if cmd.heredocs:
        if len(args) != 1 or not prepend:
            raise errors.InvalidArgument(f"parsing produces an invalid run command: {args}")
        if parse_heredoc(args[0]) is not None:
            doc = cmd.heredocs[0]
            if doc.data.startswith("#!"):
                script = (doc.name, doc.data)
                args, prepend = ["/dev/pipes/" + doc.name], False
            else:
                args = [doc.data]
        else:
            args = [args[0] + "".join("\n" + d.content + d.name for d in cmd.heredocs)]
    if prepend and cmd.cmd is not None:
        args = state.shell + args
    return args, script


class _Mounts:
    """The host side of a step's ``--mount``s: binds, tmpfs, locks held."""

    def __init__(self):
        self.mounts: list[dict] = []
        self.tmpfs: dict[str, str] = {}
        self.stubs: list[tuple[str, str]] = []
        self.keys: list = []
        self.locks: list[asyncio.Lock] = []


async def _prepare_mounts(build, state, specs, scratch: str) -> _Mounts:
    out = _Mounts()
    workdir = state.config.get("WorkingDir") or "/"
    for spec in specs:
        target = spec.target if spec.target.startswith("/") else \
            posixpath.normpath(posixpath.join("/", workdir, spec.target))
        if spec.type == "tmpfs":
            out.tmpfs[target] = f"size={spec.size}" if spec.size else ""
            out.stubs.append((target, "dir"))
            out.keys.append(("tmpfs", target, spec.size))
        elif spec.type == "cache":
            path = await _cache_dir(build, spec, target)
            if spec.sharing == "locked":
                lock = build.lock(path)
                await lock.acquire()
                out.locks.append(lock)
            out.mounts.append({"Type": "bind", "Source": path, "Target": target,
                               "ReadOnly": spec.readonly})
            out.stubs.append((target, "dir"))
            out.keys.append(("cache", target, spec.id or target, spec.readonly))
        else:
            source, kind, key = await _bind_source(build, spec, scratch)
            out.mounts.append({"Type": "bind", "Source": source, "Target": target,
                               "ReadOnly": spec.readonly})
            out.stubs.append((target, kind))
            out.keys.append(("bind", target, key))
    return out


async def _cache_dir(build, spec, target: str) -> str:
    """A ``type=cache`` directory, made once with the mode and owner asked."""
    base = os.path.join(build.engine.kernel.paths.data_root, "builder", "cache-mounts")
    key = hashlib.sha256((spec.id or target).encode()).hexdigest()[:32]
    path = os.path.join(base, key)
    if not os.path.isdir(path):
        os.makedirs(base, mode=0o700, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".new-", dir=base)
        os.chmod(tmp, spec.mode if spec.mode is not None else 0o755)
        os.chown(tmp, spec.uid or 0, spec.gid or 0)
        try:
            os.rename(tmp, path)
        except OSError:
            os.rmdir(tmp)  # made meanwhile by another step
    return path


async def _bind_source(build, spec, scratch: str) -> tuple[str, str, str]:
    """``(host path, "dir"|"file", cache key part)`` of a bind mount's source."""
    from pallet.engine.rootfs import scoped_path

    if spec.from_:
        img = await build.image_or_stage(spec.from_)
        root = await build.session.view(img)
        ident = img.id
    else:
        root = await build.context_dir()
        ident = build.context.source_hash(spec.source or "/") \
            if build.context.lookup(spec.source or "/") is not None else ""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        inside = scoped_path(fd, spec.source or "/")
    finally:
        os.close(fd)
    host = os.path.join(root, inside.lstrip("/"))
    if not os.path.exists(host):
        raise errors.InvalidArgument(f"failed to compute cache key: \"{spec.source}\" not found")
    kind = "dir" if os.path.isdir(host) else "file"
    if not spec.readonly and kind == "dir":
        host = await build.session.overlay(host)
    return host, kind, f"{spec.from_}|{ident}|{spec.source}|{spec.readonly}"


async def run_step(build, state, cmd: ins.Run) -> None:
    """dockerd's dispatchRun, with BuildKit's RUN options."""
    session, options, out = build.session, build.options, build.out
    line, script = command_line(state, cmd)
    env = list(state.config.get("Env") or [])
    build_args = state.args.filter_allowed(env)
    save = prepend_env(state.args, build_args, line) if build_args else line
    probe = bi.run_config(copy.deepcopy(state.config))
    probe["Cmd"] = save
    if save:
        probe["Entrypoint"] = None
    extra = ""
    if cmd.mounts or cmd.network or script:
        extra = json.dumps([[m.type, m.target, m.source, m.from_, m.id, m.readonly]
                            for m in cmd.mounts] + [cmd.network, script], default=str)
    scratch = tempfile.mkdtemp(prefix="run-", dir=session.tmp)
    mounts = await _prepare_mounts(build, state, cmd.mounts, scratch)
    try:
        if mounts.keys:
            extra = json.dumps([extra, mounts.keys], default=str)
        if await build.probe(state, probe, extra):
            return
        config = bi.run_config(copy.deepcopy(state.config))
        config.update(Cmd=line, Env=env + build_args, Healthcheck={"Test": ["NONE"]},
                      Image=state.image.id)
        host = options.host_config()
        if cmd.network:
            host["NetworkMode"] = "default" if cmd.network == "default" else cmd.network
        host["Mounts"] = list(mounts.mounts)
        if mounts.tmpfs:
            host["Tmpfs"] = dict(mounts.tmpfs)
        if script is not None:
            pipes = os.path.join(scratch, "pipes")
            os.makedirs(pipes, mode=0o755)
            with open(os.path.join(pipes, script[0]), "w") as f:
                f.write(script[1])
            os.chmod(os.path.join(pipes, script[0]), 0o755)
            host["Mounts"].append({"Type": "bind", "Source": pipes, "Target": "/dev/pipes",
                                   "ReadOnly": True})

        async def emit(data: bytes) -> None:
            out.raw(data)

        result = await session.run(
            state.image, config, host, output=emit, stubs=mounts.stubs,
            keep_failed=not options.force_remove,
            on_created=lambda cid: out.write(f" ---> Running in {cid[:12]}\n"))
        if result.exit_code != 0:
            if options.force_remove:
                await session.remove(result.container)
                out.write(f"Removing intermediate container {result.container[:12]}\n")
            raise StepFailed(f"The command '{' '.join(line)}' returned a non-zero code: "
                             f"{result.exit_code}", result.exit_code)
        layer = await session.container_layer(result.container, state.image)
        await build.commit(state, probe, layer=layer, container=result.container, extra=extra)
        if options.remove:
            await session.remove(result.container)
            out.write(f"Removing intermediate container {result.container[:12]}\n")
        else:
            session.keep(result.container)
    finally:
        for lock in mounts.locks:
            lock.release()
        with contextlib.suppress(OSError):
            import shutil
            shutil.rmtree(scratch)
