"""Health checks, on dockerd's schedule.

A container whose ``Config.Healthcheck`` (its own, or its image's
``HEALTHCHECK``) says ``CMD`` or ``CMD-SHELL`` gets a probe: an exec in the
container every ``Interval`` (default 30 s) from its start, killed after
``Timeout`` (default 30 s).  Exit 0 is healthy; anything else adds to the
failing streak (not while the ``StartPeriod`` runs and the container has
never been healthy), and ``Retries`` failures in a row (default 3) make it
unhealthy.  ``State.Health`` keeps the status, the streak and the last five
results (``Start``, ``End``, ``ExitCode``, ``Output``: stdout and stderr
together, cut at 4096 bytes as dockerd cuts them); each change of status is
a ``health_status: STATUS`` event.  Probes stop while the container is
stopped or paused and start again with it (after a palletd restart too:
the state is in ``config.v2.json``).
"""
from __future__ import annotations

import asyncio
import logging
import signal

from pallet.core import errors
from pallet.units.duration import duration_string

log = logging.getLogger("pallet.engine.health")

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000     # 1ms, dockerd's MinimumDuration
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096

STARTING, HEALTHY, UNHEALTHY, NONE = "starting", "healthy", "unhealthy", "none"
STATUSES = (STARTING, HEALTHY, UNHEALTHY, NONE)


# --- configuration ------------------------------------------------------------------------

def merge(user: dict | None, image: dict | None) -> dict | None:
    """dockerd's merge of a create's Healthcheck with the image's: what the
    request leaves empty (no test, zero durations, zero retries) comes from
    the image."""
    if not image:
        return user
    if user is None:
        return dict(image)
    out = dict(user)
    if not out.get("Test"):
        out["Test"] = image.get("Test")
    for key in ("Interval", "Timeout", "StartPeriod", "Retries"):
        if not out.get(key) and image.get(key):
            out[key] = image[key]
    return out


def check(hc) -> None:
    """dockerd's create-time checks of ``Config.Healthcheck`` (a 400 each)."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise errors.InvalidArgument("invalid Healthcheck: JSON object expected")
    test = hc.get("Test")
    if test is not None and (not isinstance(test, list) or
                             not all(isinstance(t, str) for t in test)):
        raise errors.InvalidArgument("invalid Healthcheck.Test: a list of strings is expected")
    for key in ("Interval", "Timeout", "StartPeriod", "Retries"):
        v = hc.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise errors.InvalidArgument(f"invalid Healthcheck.{key}: {v!r}")
    for key in ("Interval", "Timeout"):
        if hc.get(key) and hc[key] < MIN_DURATION:
            raise errors.InvalidArgument(f"{key} in Healthcheck cannot be less than 1ms")
    if (hc.get("Retries") or 0) < 0:
        raise errors.InvalidArgument("Retries in Healthcheck cannot be negative")
    if hc.get("StartPeriod") and hc["StartPeriod"] < MIN_DURATION:
        raise errors.InvalidArgument("StartPeriod in Healthcheck cannot be less than 1ms")


def probe_command(config: dict) -> list[str] | None:
    """The probe's argv from a container's Config (None: no health check)."""
    test = list((config.get("Healthcheck") or {}).get("Test") or ())
    if not test:
        return None
    kind = test[0]
    if kind == "CMD":
        return test[1:] or None
    if kind == "CMD-SHELL":
        shell = list(config.get("Shell") or ()) or ["/bin/sh", "-c"]
        return shell + test[1:] if len(test) > 1 else None
    if kind != "NONE":
        log.warning("unknown healthcheck type %r (expected 'CMD')", kind)
    return None


def _setting(hc: dict, key: str, default: int) -> int:
    v = hc.get(key)
    return int(v) if v else default


def status_of(state: dict) -> str:
    """The health filter's value of a container: its status, or ``none``."""
    health = state.get("Health")
    return health.get("Status") or NONE if health else NONE


def check_filter(values) -> None:
    for v in values:
        if v not in STATUSES:
            raise errors.InvalidArgument(f"Unrecognised filter value for health: {v}")


class _Output:
    """stdout and stderr of a probe together, the first 4096 bytes kept."""

    def __init__(self):
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        keep = max(0, MAX_OUTPUT - len(self.data))
        self.data += chunk[:keep]
        if keep < len(chunk):
            self.truncated = True

    def text(self) -> str:
        out = bytes(self.data).decode("utf-8", "replace")
        return out + "..." if self.truncated else out


# --- the monitors -----------------------------------------------------------------------

class HealthMonitor:
    """One probe loop per running, unpaused container that has a health check."""

    def __init__(self, containers, execs, on_result=None):
        self.containers = containers
        self.execs = execs
        self.on_result = on_result   # (container, exit code, seconds) -> None (metrics)
        self._closing = False

    def start(self, c) -> None:
        """The container started: status ``starting``, streak 0 (the log stays),
        and the probes begin."""
        if probe_command(c.data["Config"]) is None:
            return
        self.stop(c)
        health = c.state.get("Health") or {"Log": []}
        health.update({"Status": STARTING, "FailingStreak": 0})
        health.setdefault("Log", [])
        c.state["Health"] = health
        self.resume(c)

    def resume(self, c) -> None:
        """Probe again (unpause, reattach after a palletd restart) where it was."""
        if self._closing or probe_command(c.data["Config"]) is None or not c.running \
                or c.paused:
            return
        if c.health_task is not None and not c.health_task.done():
            return
        if not c.state.get("Health"):
            c.state["Health"] = {"Status": STARTING, "FailingStreak": 0, "Log": []}
        c.health_task = self.containers._spawn(self._monitor(c))

    def stop(self, c) -> None:
        """No more probes (stop, pause, exit, removal); a probe running is killed."""
        task, c.health_task = c.health_task, None
        if task is not None and not task.done():
            task.cancel()

    def close(self) -> None:
        self._closing = True
        for c in self.containers.store.all():
            self.stop(c)

    async def _monitor(self, c) -> None:
        hc = c.data["Config"].get("Healthcheck") or {}
        interval = _setting(hc, "Interval", DEFAULT_INTERVAL) / SECOND
        while True:
            await asyncio.sleep(interval)
            if not c.running or c.paused:
                return
            result = await self.probe(c)
            if result is not None:
                self._record(c, result)

    async def probe(self, c) -> dict | None:
        """Run the probe once: ``{"Start", "End", "ExitCode", "Output"}``."""
        from pallet.engine.logs import rfc3339nano

        hc = c.data["Config"].get("Healthcheck") or {}
        argv = probe_command(c.data["Config"])
        if argv is None:
            return None
        timeout_ns = _setting(hc, "Timeout", DEFAULT_TIMEOUT)
        started = rfc3339nano()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        output = _Output()
        code = -1
        rec = None
        try:
            cfg = {"Cmd": argv, "AttachStdout": True, "AttachStderr": True, "Tty": False}
            rec = self.execs.get(self.execs.create(c.id, cfg)["Id"])
            await self.execs.start(rec, detach=False)
            failed = rec.pid == 0 and rec.done.is_set()
            try:
                await asyncio.wait_for(self._drain(rec, output), timeout_ns / SECOND)
                code = rec.exit_code if not failed else -1
                if failed:
                    output = _Output()
                    output.add(self._start_error(rec).encode())
            except asyncio.TimeoutError:
                await self.containers._quiet(
                    self.execs.ctrd.task_kill(c.id, signal.SIGKILL, exec_id=rec.id))
                output = _Output()
                output.add(f"Health check exceeded timeout ({duration_string(timeout_ns)})"
                           .encode())
                code = -1
        except errors.PalletError as e:
            output = _Output()
            output.add(e.message.encode())
            code = -1
        finally:
            if rec is not None:
                self.execs.by_id.pop(rec.id, None)  # probes are not kept as execs
        if self.on_result is not None:
            self.on_result(c, code, loop.time() - t0)
        return {"Start": started, "End": rfc3339nano(), "ExitCode": code,
                "Output": output.text()}

    @staticmethod
    async def _drain(rec, output: _Output) -> None:
        rec.start_error = ""
        while True:
            item = await rec.output.get()
            if item is None:
                break
            if rec.pid == 0:
                rec.start_error += item[1].decode(errors="replace")
            else:
                output.add(item[1])
        await rec.done.wait()

    @staticmethod
    def _start_error(rec) -> str:
        return (getattr(rec, "start_error", "") or "").rstrip("\r\n")

    def _record(self, c, result: dict) -> None:
        """dockerd's handleProbeResult: the log, the streak, the status, the event."""
        from pallet.engine.logs import parse_time

        health = c.state.get("Health")
        if health is None or not c.running:
            return
        hc = c.data["Config"].get("Healthcheck") or {}
        retries = _setting(hc, "Retries", DEFAULT_RETRIES)
        old = health.get("Status")
        log_ = list(health.get("Log") or [])
        log_.append(result)
        health["Log"] = log_[-MAX_LOG_ENTRIES:]
        if result["ExitCode"] == 0:
            health["FailingStreak"] = 0
            health["Status"] = HEALTHY
        else:
            count = True
            if old == STARTING:
                period = _setting(hc, "StartPeriod", DEFAULT_START_PERIOD)
                try:
                    since = parse_time(result["Start"]) - parse_time(c.state["StartedAt"])
                except (KeyError, ValueError):
                    since = period
                count = since >= period
            if count:
                health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
                if health["FailingStreak"] >= retries:
                    health["Status"] = UNHEALTHY
        try:
            c.save()
        except OSError as e:
            log.warning("container %s: save health: %s", c.id[:12], e)
        if health["Status"] != old:
            self.containers.emit(c, "health_status: " + health["Status"])
