"""Running a Dockerfile: stages, steps, the cache, as dockerd's legacy builder
runs them (``Step N/M : ...``, `` ---> <id>``, one image per instruction,
``#(nop)`` commits for the metadata instructions).

Beyond it, as BuildKit does: only the stages the target needs are built,
and RUN takes ``--mount`` and heredocs, COPY takes ``--chmod``, ``--link``
and heredocs (:mod:`.filesteps`, :mod:`.runstep`).
"""
from __future__ import annotations

import asyncio
import copy
import logging

import attrs

from pallet.core import errors
from pallet.engine import build_image as bi

from pallet.engine import build_gofmt as gofmt
from pallet.plugins.builder_dockerfile import instructions as ins
from pallet.plugins.builder_dockerfile.buildargs import BuildArgs
from pallet.plugins.builder_dockerfile.shell import Lex, env_map

log = logging.getLogger("pallet.builder")

DEFAULT_SHELL = ["/bin/sh", "-c"]
_SIGNALS = {"HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1",
            "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CLD", "CONT", "STOP",
            "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO",
            "POLL", "PWR", "SYS", "RTMIN", "RTMAX"}


@attrs.define
class StageState:
    """One stage's state: its image so far, its container config, arguments."""

    stage: ins.Stage
    image: bi.BuildImage
    config: dict
    args: BuildArgs
    maintainer: str = ""
    cmd_set: bool = False
    cache_busted: bool = False

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)


def check_signal(sig: str) -> None:
    """dockerd's ParseSignal: a number or a known name (``SIGTERM``, ``TERM``)."""
    if sig.isdigit() and int(sig) > 0:
        return
    name = sig.upper()
    name = name[3:] if name.startswith("SIG") else name
    if name in _SIGNALS or (name.startswith(("RTMIN+", "RTMAX-")) and name[6:].isdigit()):
        return
    raise errors.InvalidArgument(f"Invalid signal: {sig}")


def parse_ports(specs) -> dict:
    """``EXPOSE`` specs (``80``, ``80/udp``, ``8000-8002``) as docker's port set."""
    out = {}
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        port, _, proto = spec.rpartition(":")[2].partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise errors.InvalidArgument(f"Invalid proto: {proto}")
        start, dash, end = port.partition("-")
        if not start.isdigit() or (dash and not end.isdigit()):
            raise errors.InvalidArgument(f"Invalid containerPort: {port}")
        lo, hi = int(start), int(end) if dash else int(start)
        if hi < lo:
            raise errors.InvalidArgument(f"invalid range specified for container: {port}")
        for p in range(lo, hi + 1):
            out[f"{p}/{proto}"] = {}
    return out


class Build:
    """One build of a parsed Dockerfile (see the module doc)."""

    def __init__(self, engine, session, options, context, parsed, cache, out, *,
                 cache_from=(), locks: dict | None = None):
        self.engine = engine
        self.session = session
        self.options = options
        self.context = context
        self.parsed = parsed
        self.cache = cache
        self.out = out
        self.lex = Lex(parsed.escape)
        self.stages: dict[str, bi.BuildImage] = {}
        self.by_index: list[bi.BuildImage | None] = []
        self.cache_from = list(cache_from)
        self.step = 0
        self.total = 0
        self.locks = locks if locks is not None else {}
        self._context_dir: str | None = None

    # --- the whole build -------------------------------------------------------------------
    async def run(self) -> bi.BuildImage:
        meta, stages = ins.parse_stages(self.parsed)
        if not stages:
            raise errors.InvalidArgument("file with no instructions")
        if self.options.labels:
            label = ins.Label("LABEL", "LABEL " + " ".join(
                f"{gofmt.quote(k)}='{v}'" for k, v in sorted(self.options.labels.items())),
                0, tuple(sorted(self.options.labels.items())))
            stages[-1] = attrs.evolve(stages[-1], commands=stages[-1].commands + (label,))
        args = BuildArgs(self.options.build_args)
        for arg in meta:
            self._meta_arg(arg, args)
        target = self._target(stages)
        needed = self._needed(stages, target, args)
        self.total = len(meta) + sum(1 + len(stages[i].commands) for i in needed)
        self.step = len(meta)
        for i, arg in enumerate(meta):
            self.out.write(f"Step {i + 1}/{self.total} : {arg}\n")
        self.by_index = [None] * len(stages)
        state = None
        for i in needed:
            state = await self._run_stage(stages[i], args)
            args.merge_referenced(state.args)
            self.by_index[i] = state.image
            if stages[i].name:
                self.stages[stages[i].name] = state.image
        unused = args.unused()
        if unused:
            self.out.write(f"[Warning] One or more build-args {gofmt.list_v(unused)} "
                           "were not consumed\n")
        if state is None or not state.image.id:
            raise errors.InvalidArgument("No image was generated. Is your Dockerfile empty?")
        return state.image

    def _meta_arg(self, arg: ins.Arg, args: BuildArgs) -> None:
        env = args.all_allowed()
        arg = arg.expanded(lambda w: self.lex.process_word(w, env))
        for key, value in arg.args:
            args.add_arg(key, value)
            args.add_meta_arg(key, value)

    def _target(self, stages) -> int:
        if not self.options.target:
            return len(stages) - 1
        want = self.options.target.lower()
        for i, s in enumerate(stages):
            if s.name == want:
                return i
        raise errors.InvalidArgument(f"failed to reach build target {self.options.target} "
                                     "in Dockerfile")

    def _needed(self, stages, target: int, args: BuildArgs) -> list[int]:
        """The stages the target needs (FROM, COPY --from, RUN --mount from)."""
        names = {s.name: i for i, s in enumerate(stages) if s.name}
        meta = args.all_meta()

        def ref(name: str, before: int) -> int | None:
            if name.lower() in names and names[name.lower()] < before:
                return names[name.lower()]
            if name.isdigit() and int(name) < before:
                return int(name)
            return None
        need = {target}
        todo = [target]
        while todo:
            i = todo.pop()
            deps = []
            try:
                deps.append(ref(self.lex.process_word(stages[i].base, meta), i))
            except errors.InvalidArgument:
                pass
            for cmd in stages[i].commands:
                if isinstance(cmd, ins.Copy) and cmd.from_:
                    deps.append(ref(cmd.from_, i))
                if isinstance(cmd, ins.Run):
                    deps.extend(ref(m.from_, i) for m in cmd.mounts if m.from_)
            for d in deps:
                if d is not None and d not in need:
                    need.add(d)
                    todo.append(d)
        return sorted(need)

    def _print_step(self, what) -> None:
        self.step += 1
        self.out.write(f"Step {self.step}/{self.total} : {what}\n")

    def _done(self, state: StageState) -> None:
        state.config["Image"] = state.image.id
        self.out.write(f" ---> {state.image.id.partition(':')[2][:12]}\n")

    async def _run_stage(self, stage: ins.Stage, args: BuildArgs) -> StageState:
        self._print_step(stage)
        state = await self._from(stage, args)
        self._done(state)
        for cmd in stage.commands:
            self._print_step(cmd)
            await self.dispatch(state, cmd)
            self._done(state)
        if state.image.id:
            self.out.aux(state.image.id)
        return state

    # --- FROM --------------------------------------------------------------------------------
    async def _from(self, stage: ins.Stage, args: BuildArgs) -> StageState:
        meta = args.all_meta()
        name = self.lex.process_word(stage.base, meta)
        if not name:
            raise errors.InvalidArgument(f"base name ({stage.base}) should not be blank")
        platform = self.lex.process_word(stage.platform, meta) if stage.platform else \
            self.options.platform
        self._check_platform(platform)
        image = await self.image_or_stage(name, from_line=True)
        cfg = copy.deepcopy(image.run_config)
        cfg = bi.run_config(cfg)
        cfg["OpenStdin"] = False
        cfg["StdinOnce"] = False
        env = list(cfg.get("Env") or [])
        if not any(e.partition("=")[0] == "PATH" for e in env):
            cfg["Env"] = env + [bi.DEFAULT_PATH]
        state = StageState(stage, image, cfg, args.for_stage())
        triggers = list(cfg.get("OnBuild") or [])
        if triggers:
            cfg["OnBuild"] = None
            self.out.write(f"# Executing {len(triggers)} build trigger"
                           f"{'s' if len(triggers) > 1 else ''}\n")
            for trigger in triggers:
                state.config["Image"] = state.image.id
                await self.dispatch(state, ins.parse_trigger(trigger, self.parsed.escape))
        return state

    def _check_platform(self, platform: str) -> None:
        from pallet.distribution.platforms import Platform

        if not platform:
            return
        host = Platform.host()
        parts = platform.split("/")
        ok = parts[0] == host.os and (len(parts) < 2 or parts[1] == host.architecture)
        if not ok:
            raise errors.InvalidArgument(f"image with platform {platform} is not supported "
                                         f"on this {host.os}/{host.architecture} daemon")

    async def image_or_stage(self, name: str, *, from_line: bool = False) -> bi.BuildImage:
        """A stage's image (by name, or index for COPY --from), else an image
        (``scratch``, a local one, or pulled)."""
        low = name.lower()
        if low in self.stages:
            return self.stages[low]
        if not from_line and name.isdigit():
            ix = int(name)
            if ix < len(self.by_index) and self.by_index[ix] is not None:
                return self.by_index[ix]
            raise errors.InvalidArgument(f"invalid stage index {ix}")
        if low == "scratch":
            return bi.scratch()
        return await self.base_image(name)

    async def base_image(self, name: str) -> bi.BuildImage:
        images = self.engine.images
        rec = None
        if not self.options.pull:
            try:
                rec = await images.get(name)
            except errors.NotFound:
                rec = None
        if rec is None:
            await self._pull(name)
            rec = await images.get(name)
        await images.unpack(rec)
        return bi.from_record(rec)

    async def _pull(self, name: str) -> None:
        from pallet.engine.pull import Distribution

        images = self.engine.images
        dist = getattr(images, "distribution", None)
        if dist is None:
            dist = images.distribution = Distribution(images.kernel, images)
        await dist.pull(name, "", platform=None, creds=self.options.credentials,
                        progress=self.out.status)

    # --- steps ---------------------------------------------------------------------------------
    async def dispatch(self, state: StageState, cmd: ins.Instruction) -> None:
        """Run one instruction on the stage."""
        env = list(state.config.get("Env") or []) + state.args.filter_allowed(
            state.config.get("Env"))
        values = env_map(env)
        cmd = cmd.expanded(lambda w: self.lex.process_word(w, values))
        handler = getattr(self, "do_" + cmd.name.lower())
        await handler(state, cmd, values)

    def shell_comment(self, state: StageState, comment: str, *, split: bool = True) -> dict:
        """The container config a metadata step commits (its Cmd a ``#(nop)``)."""
        probe = bi.run_config(copy.deepcopy(state.config))
        probe["Cmd"] = state.shell + (["#(nop) ", comment] if split else ["#(nop) " + comment])
        return probe

    async def probe(self, state: StageState, probe: dict, extra: str = "") -> bool:
        """Take the step from the cache when it is there (dockerd's probeCache)."""
        if self.options.no_cache or state.cache_busted:
            return False
        hit = await self._cached(state, probe, extra)
        if hit is None:
            state.cache_busted = True
            return False
        self.out.write(" ---> Using cache\n")
        state.image = hit
        return True

    async def _cached(self, state: StageState, probe: dict, extra: str):
        from pallet.plugins.builder_dockerfile.cachefrom import restore

        ctrd = self.session.ctrd
        local = await self.cache.lookup(ctrd, state.image.id, probe, extra)
        if not self.cache_from:
            return local
        if local is not None and any(local.id in self.cache.ancestors(s.id)
                                     for s in self.cache_from):
            return local
        for target in self.cache_from:
            img = await restore(self, state, target, probe)
            if img is not None:
                return img
        return None

    async def commit(self, state: StageState, probe: dict, *, layer=None, container: str = "",
                     extra: str = "", created_by: str | None = None) -> None:
        """Write the step's image (one layer more, or none) and cache it."""
        config = bi.run_config(copy.deepcopy(state.config))
        new = bi.child_config(state.image, config, probe,
                              diff_id=layer.digest if layer is not None else None,
                              author=state.maintainer, container=container,
                              created_by=created_by)
        layers = state.image.layers + ((layer,) if layer is not None else ())
        img = await bi.write_image(self.session.ctrd, new, layers,
                                   snapshotter=self.session.snapshotter)
        await self.cache.store(self.session.ctrd, state.image.id, probe, img,
                               layer.size if layer is not None else 0, extra)
        state.image = img

    async def commit_comment(self, state: StageState, comment: str) -> None:
        """dockerd's ``commit``: a metadata step."""
        probe = self.shell_comment(state, comment)
        if await self.probe(state, probe):
            return
        await self.commit(state, probe)

    # --- metadata instructions -------------------------------------------------------------
    async def do_env(self, state, cmd: ins.Env, _values) -> None:
        env = list(state.config.get("Env") or [])
        for key, value in cmd.pairs:
            item = f"{key}={value}"
            for i, e in enumerate(env):
                if e.partition("=")[0] == key:
                    env[i] = item
                    break
            else:
                env.append(item)
        state.config["Env"] = env
        await self.commit_comment(state, "ENV " + " ".join(f"{k}={v}" for k, v in cmd.pairs))

    async def do_label(self, state, cmd: ins.Label, _values) -> None:
        labels = dict(state.config.get("Labels") or {})
        labels.update(cmd.pairs)
        state.config["Labels"] = labels
        await self.commit_comment(state, "LABEL " + " ".join(f"{k}={v}" for k, v in cmd.pairs))

    async def do_maintainer(self, state, cmd: ins.Maintainer, _values) -> None:
        state.maintainer = cmd.maintainer
        await self.commit_comment(state, "MAINTAINER " + cmd.maintainer)

    async def do_arg(self, state, cmd: ins.Arg, _values) -> None:
        words = []
        for key, value in cmd.args:
            words.append(key if value is None else f"{key}={value}")
            state.args.add_arg(key, value)
        await self.commit_comment(state, "ARG " + " ".join(words))

    async def do_cmd(self, state, cmd: ins.Cmd, _values) -> None:
        line = list(cmd.cmd or [])
        if cmd.prepend_shell and cmd.cmd is not None:
            line = state.shell + line
        state.config["Cmd"] = line
        await self.commit_comment(state, "CMD " + gofmt.quote_list(line))
        if cmd.cmd:
            state.cmd_set = True

    async def do_entrypoint(self, state, cmd: ins.Entrypoint, _values) -> None:
        line = None if cmd.cmd is None else list(cmd.cmd)
        if cmd.prepend_shell and line is not None:
            line = state.shell + line
        state.config["Entrypoint"] = line
        if not state.cmd_set:
            state.config["Cmd"] = None
        await self.commit_comment(state, "ENTRYPOINT " + gofmt.quote_list(line))

    async def do_shell(self, state, cmd: ins.Shell, _values) -> None:
        state.config["Shell"] = list(cmd.shell)
        await self.commit_comment(state, "SHELL " + gofmt.list_v(cmd.shell))

    async def do_user(self, state, cmd: ins.User, _values) -> None:
        state.config["User"] = cmd.user
        await self.commit_comment(state, "USER " + cmd.user)

    async def do_volume(self, state, cmd: ins.Volume, _values) -> None:
        vols = dict(state.config.get("Volumes") or {})
        for v in cmd.volumes:
            if not v:
                raise errors.InvalidArgument("VOLUME specified can not be an empty string")
            vols[v] = {}
        state.config["Volumes"] = vols
        await self.commit_comment(state, "VOLUME " + gofmt.list_v(cmd.volumes))

    async def do_stopsignal(self, state, cmd: ins.StopSignal, _values) -> None:
        check_signal(cmd.signal)
        state.config["StopSignal"] = cmd.signal
        await self.commit_comment(state, "STOPSIGNAL " + cmd.signal)

    async def do_expose(self, state, cmd: ins.Expose, values) -> None:
        ports = []
        for p in cmd.ports:
            ports.extend(self.lex.process_words(p, values))
        exposed = dict(state.config.get("ExposedPorts") or {})
        exposed.update(parse_ports(ports))
        state.config["ExposedPorts"] = exposed
        await self.commit_comment(state, "EXPOSE " + " ".join(sorted(ports)))

    async def do_healthcheck(self, state, cmd: ins.Healthcheck, _values) -> None:
        old = state.config.get("Healthcheck") or {}
        if old.get("Test") and old["Test"][0] != "NONE":
            self.out.write(f"Note: overriding previous HEALTHCHECK: {gofmt.list_v(old['Test'])}\n")
        state.config["Healthcheck"] = dict(cmd.health)
        await self.commit_comment(state, "HEALTHCHECK " + gofmt.health_q(cmd.health))

    async def do_onbuild(self, state, cmd: ins.Onbuild, _values) -> None:
        state.config["OnBuild"] = list(state.config.get("OnBuild") or []) + [cmd.expression]
        await self.commit_comment(state, "ONBUILD " + cmd.expression)

    # --- file and run instructions (their own modules) ------------------------------------------
    async def do_workdir(self, state, cmd: ins.Workdir, _values) -> None:
        from pallet.plugins.builder_dockerfile.filesteps import workdir
        await workdir(self, state, cmd)

    async def do_copy(self, state, cmd: ins.Copy, values) -> None:
        from pallet.plugins.builder_dockerfile.filesteps import copy_step
        await copy_step(self, state, cmd)

    do_add = do_copy

    async def do_run(self, state, cmd: ins.Run, _values) -> None:
        from pallet.plugins.builder_dockerfile.runstep import run_step
        await run_step(self, state, cmd)

    def lock(self, key: str) -> asyncio.Lock:
        """A lock shared by every build of the daemon (``sharing=locked``)."""
        if key not in self.locks:
            self.locks[key] = asyncio.Lock()
        return self.locks[key]

    async def context_dir(self) -> str:
        """The context written out on disk (made on first use)."""
        import os

        if self._context_dir is None:
            path = os.path.join(self.session.data_tmp, "context")
            os.makedirs(path, mode=0o755)
            await asyncio.to_thread(self.context.extract, path)
            self._context_dir = path
        return self._context_dir
