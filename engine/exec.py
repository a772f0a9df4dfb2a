"""``docker exec``: extra processes in a running container, through
containerd's Tasks.Exec / Start / Wait / DeleteProcess.

An exec is created (its configuration kept in memory, as dockerd does), then
started once: attached (its stdio are FIFOs palletd relays to the hijacked
connection, with or without a terminal) or detached (stdio on /dev/null).
Its exit code stays readable (``GET /exec/{id}/json``) until its container
goes.
"""
from __future__ import annotations

import asyncio
import logging
import secrets

from pallet.core import errors
from pallet.containerd.client import spec_of
from pallet.engine import spec as specmod
from pallet.engine.fifos import ContainerIO

log = logging.getLogger("pallet.api_rest.exec")

_BOOL_FIELDS = ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "Privileged")
#: ExecConfig's fields: dockerd's JSON decoding matches them whatever their case
#: (docker-py sends ``detachKeys``)
_FIELDS = _BOOL_FIELDS + ("Cmd", "Env", "User", "WorkingDir", "DetachKeys", "ConsoleSize")


def _canonical(body: dict) -> dict:
    by_lower = {f.lower(): f for f in _FIELDS}
    return {by_lower.get(k.lower(), k) if isinstance(k, str) else k: v for k, v in body.items()}


class ExecRecord:
    def __init__(self, exec_id: str, container, cfg: dict):
        self.id = exec_id
        self.container = container
        self.cfg = cfg
        self.started = False
        self.running = False
        self.exit_code: int | None = None
        self.pid = 0
        self.io: ContainerIO | None = None
        self.output: asyncio.Queue | None = None
        self.done = asyncio.Event()

    @property
    def tty(self) -> bool:
        return bool(self.cfg.get("Tty"))

    @property
    def cmd(self) -> list[str]:
        return list(self.cfg.get("Cmd") or [])

    def inspect(self) -> dict:
        cmd = self.cmd
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.tty, "entrypoint": cmd[0] if cmd else "",
                              "arguments": cmd[1:], "privileged": bool(self.cfg.get("Privileged")),
                              "user": self.cfg.get("User") or ""},
            "OpenStdin": bool(self.cfg.get("AttachStdin")),
            "OpenStderr": bool(self.cfg.get("AttachStderr")),
            "OpenStdout": bool(self.cfg.get("AttachStdout")),
            "CanRemove": False, "ContainerID": self.container.id,
            "DetachKeys": self.cfg.get("DetachKeys") or "", "Pid": self.pid,
        }


class ExecService:
    def __init__(self, kernel, ctrd, containers):
        self.kernel = kernel
        self.ctrd = ctrd
        self.containers = containers
        self.by_id: dict[str, ExecRecord] = {}
        containers.exec_ids = self.ids_of
        containers.forget_execs = self.forget

    def ids_of(self, c) -> list[str]:
        return [e.id for e in self.by_id.values() if e.container is c]

    def forget(self, c) -> None:
        for eid in self.ids_of(c):
            self.by_id.pop(eid, None)

    def get(self, exec_id: str) -> ExecRecord:
        rec = self.by_id.get(exec_id)
        if rec is None:
            raise errors.NotFound(f"No such exec instance: {exec_id}")
        return rec

    def _emit(self, rec: ExecRecord, action: str, **attrs) -> None:
        self.containers.emit(rec.container, action, execID=rec.id, **attrs)

    # --- create ------------------------------------------------------------------------
    def create(self, ref: str, body) -> dict:
        c = self.containers.get(ref)
        if not isinstance(body, dict):
            raise errors.InvalidArgument("invalid exec config: JSON object expected")
        body = _canonical(body)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise errors.InvalidArgument("No exec command specified")
        for key in _BOOL_FIELDS:
            if body.get(key) is not None and not isinstance(body[key], bool):
                raise errors.InvalidArgument(f"invalid {key}: {body[key]!r}")
        env = body.get("Env")
        if env is not None and (not isinstance(env, list) or
                                not all(isinstance(e, str) for e in env)):
            raise errors.InvalidArgument("invalid Env: a list of strings is expected")
        for key in ("User", "WorkingDir", "DetachKeys"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise errors.InvalidArgument(f"invalid {key}: {body[key]!r}")
        wd = body.get("WorkingDir")
        if wd and not wd.startswith("/"):
            raise errors.InvalidArgument(f"the working directory '{wd}' is invalid, it needs to "
                                         "be an absolute path")
        if body.get("DetachKeys"):
            from pallet.engine.detach import parse_keys
            parse_keys(body["DetachKeys"])
        self._check_running(c)
        cfg = dict(body, Cmd=cmd)
        exec_id = secrets.token_hex(32)
        rec = self.by_id[exec_id] = ExecRecord(exec_id, c, cfg)
        self._emit(rec, "exec_create: " + " ".join(cmd))
        return {"Id": exec_id}

    @staticmethod
    def _check_running(c) -> None:
        if not c.running:
            raise errors.Conflict(f"Container {c.id} is not running")
        if c.paused:
            raise errors.Conflict(f"Container {c.id} is paused, unpause the container before "
                                  "exec")
        if c.state.get("Status") == "restarting":
            raise errors.Conflict(f"Container {c.id} is restarting, wait until the container "
                                  "is running")

    # --- start -------------------------------------------------------------------------
    def check_start(self, exec_id: str) -> ExecRecord:
        """What can be refused with an HTTP error before the connection is taken over."""
        rec = self.get(exec_id)
        if rec.started:
            raise errors.Conflict(f"Exec command {exec_id} is already running" if rec.running
                                  else f"Exec command {exec_id} has already run")
        self._check_running(rec.container)
        return rec

    async def _process(self, rec: ExecRecord, tty: bool) -> dict:
        c = rec.container
        base = spec_of(await self.ctrd.container_get(c.id)).get("process") or {}
        proc = {k: v for k, v in base.items() if k not in ("args", "terminal", "consoleSize")}
        proc["args"] = rec.cmd
        proc["terminal"] = tty
        env = {}
        for item in list(base.get("env") or ()) + list(rec.cfg.get("Env") or ()):
            env[item.split("=", 1)[0]] = item
        proc["env"] = list(env.values())
        if rec.cfg.get("WorkingDir"):
            proc["cwd"] = rec.cfg["WorkingDir"]
        if rec.cfg.get("User"):
            mounts = await self.ctrd.snapshot_mounts(c.id,
                                                     snapshotter=self.containers.snapshotter)
            user = specmod.resolve_user(rec.cfg["User"], specmod.rootfs_dirs_from_mounts(mounts))
            proc["user"] = user
        if rec.cfg.get("Privileged"):
            caps = list(specmod.host_caps())
            proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        return proc

    async def start(self, rec: ExecRecord, *, detach: bool, tty: bool | None = None,
                    console_size=None) -> None:
        """Launch the process.  Attached, ``rec.output`` then yields ``(stream, bytes)``
        and ends with None after the exit code is known."""
        c = rec.container
        self.check_start(rec.id)
        rec.started = True
        # the process gets a terminal if the exec was created with one (dockerd);
        # the start's Tty only chooses how its output is framed
        tty = rec.tty
        try:
            process = await self._process(rec, tty)
        except errors.PalletError:
            rec.started = False
            raise
        paths = {"stdin": "", "stdout": "", "stderr": ""}
        if not detach:
            rec.output = asyncio.Queue()
            io = ContainerIO(self.containers.paths.fifo_dir(c.id),
                             stdin=bool(rec.cfg.get("AttachStdin")), stderr=not tty,
                             prefix=f"exec-{rec.id}")
            io.open()
            rec.io = io
            paths.update(io.paths)
            io.start_reading(lambda stream, data: data and rec.output.put_nowait((stream, data)))
        try:
            await self.ctrd.task_exec(c.id, rec.id, process, stdin=paths["stdin"],
                                      stdout=paths["stdout"], stderr=paths["stderr"],
                                      terminal=tty)
            try:
                rec.running = True
                rec.pid = await self.ctrd.task_start(c.id, rec.id)
            except BaseException:
                await self.containers._quiet(self.ctrd.process_delete(c.id, rec.id))
                raise
        except errors.PalletError as e:
            rec.running = False
            rec.exit_code = 127 if ("not found" in e.message or "no such file" in e.message) \
                else 126
            if rec.io is not None:
                rec.io.close()
                rec.io = None
            if rec.output is not None:
                rec.output.put_nowait(("stdout", (e.message + "\r\n").encode()))
                rec.output.put_nowait(None)
            rec.done.set()
            self._emit(rec, "exec_die", exitCode=rec.exit_code)
            if detach:
                raise
            return
        self._emit(rec, "exec_start: " + " ".join(rec.cmd))
        if console_size and tty:
            await self.containers._quiet(self.ctrd.task_resize(c.id, console_size[1],
                                                               console_size[0], rec.id))
        self.containers._spawn(self._watch(rec))

    async def _watch(self, rec: ExecRecord) -> None:
        c = rec.container
        code, backoff = None, 0.1
        while code is None:
            try:
                code, _ = await self.ctrd.task_wait(c.id, rec.id)
            except errors.NotFound:
                code = 255
            except errors.PalletError as e:
                log.info("exec %s: wait interrupted (%s); retrying", rec.id[:12], e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        if rec.io is not None:
            rec.io.release_writers()
            await rec.io.drained(2.0)
        rec.exit_code = code
        rec.running = False
        await self.containers._quiet(self.ctrd.process_delete(c.id, rec.id))
        if rec.io is not None:
            rec.io.close()
            rec.io = None
        if rec.output is not None:
            rec.output.put_nowait(None)
        rec.done.set()
        self._emit(rec, "exec_die", exitCode=code)

    async def write_stdin(self, rec: ExecRecord, data: bytes) -> None:
        if rec.io is not None:
            await rec.io.write_stdin(data)

    async def close_stdin(self, rec: ExecRecord) -> None:
        if rec.io is not None:
            rec.io.close_stdin()
        if rec.running:
            await self.containers._quiet(self.ctrd.task_close_io(rec.container.id, rec.id,
                                                                 stdin=True))

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        rec = self.get(exec_id)
        if height < 0 or width < 0 or height > 65535 or width > 65535:
            raise errors.InvalidArgument("invalid terminal size")
        if not rec.running:
            raise errors.Conflict(f"Exec {exec_id} is not running")
        await self.ctrd.task_resize(rec.container.id, width, height, rec.id)
