"""palletd's Prometheus metrics (``--metrics-addr``, ``[daemon] metrics-addr``),
with prometheus_client: dockerd's engine metrics where pallet has the same
thing (``engine_daemon_*``: container actions and their durations, container
states, events and their listeners, health checks, network actions, engine
info) and pallet's own (``pallet_*``: each containerd RPC's latency from
palletd to pallet-containerd, shims running, bytes pulled).

Off by default.  Served at ``http://ADDR/metrics`` by prometheus_client's
own HTTP server (a thread), separate from the Engine API's listeners: like
dockerd's, the endpoint has no authentication, so an address other than
loopback is warned about.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import platform
import time

from pallet.core import errors

log = logging.getLogger("pallet.engine.metrics")

#: dockerd's buckets for its action durations (seconds)
ACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) as dockerd takes ``--metrics-addr``."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.ConfigError(f"metrics-addr {addr!r}: HOST:PORT expected")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Metrics:
    """The registry and every instrument of one engine."""

    def __init__(self):
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        # dockerd's endpoint has no *_created series (a process-wide switch;
        # palletd has one registry)
        prometheus_client.disable_created_metrics()
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.container_actions = Histogram(
            "engine_daemon_container_actions_seconds",
            "The number of seconds it takes to process each container action",
            ["action"], buckets=ACTION_BUCKETS, registry=r)
        self.network_actions = Histogram(
            "engine_daemon_network_actions_seconds",
            "The number of seconds it takes to process each network action",
            ["action"], buckets=ACTION_BUCKETS, registry=r)
        self.events = Counter("engine_daemon_events", "The number of events logged",
                              registry=r)
        self.health_checks = Counter("engine_daemon_health_checks",
                                     "The total number of health checks", registry=r)
        self.health_checks_failed = Counter("engine_daemon_health_checks_failed",
                                            "The total number of failed health checks",
                                            registry=r)
        self.container_states = Gauge("engine_daemon_container_states_containers",
                                      "The count of containers in various states", ["state"],
                                      registry=r)
        self.subscribers = Gauge("engine_daemon_events_subscribers_total",
                                 "The number of current subscribers to events", registry=r)
        self.info = Gauge("engine_daemon_engine_info",
                          "The information related to the engine and the OS it is running on",
                          ["version", "commit", "architecture", "graphdriver", "kernel", "os",
                           "os_type", "os_version", "daemon_id"], registry=r)
        self.cpus = Gauge("engine_daemon_engine_cpus_cpus",
                          "The number of cpus that the host system of the engine has",
                          registry=r)
        self.memory = Gauge("engine_daemon_engine_memory_bytes",
                            "The number of bytes of memory that the host system of the engine "
                            "has", registry=r)
        self.rpc = Histogram("pallet_containerd_rpc_seconds",
                             "Latency of each containerd RPC from palletd to pallet-containerd",
                             ["method"], buckets=RPC_BUCKETS, registry=r)
        self.rpc_errors = Counter("pallet_containerd_rpc_errors",
                                  "containerd RPCs from palletd that failed", ["method"],
                                  registry=r)
        self.shims = Gauge("pallet_shims_running",
                           "Shim processes running for this palletd's containerd", registry=r)
        self.pull_bytes = Counter("pallet_pull_bytes", "Bytes of layers downloaded by pulls",
                                  registry=r)
        self._server = None

    # --- what the engine reports ---------------------------------------------------------
    def action(self, action: str, seconds: float) -> None:
        self.container_actions.labels(action).observe(seconds)

    def network_action(self, action: str, seconds: float) -> None:
        self.network_actions.labels(action).observe(seconds)

    def health_result(self, c, code: int, seconds: float) -> None:
        self.health_checks.inc()
        if code != 0:
            self.health_checks_failed.inc()

    def rpc_done(self, method: str, seconds: float, failed: bool) -> None:
        """An observer of the containerd client's calls (``CallStats.observers``)."""
        label = _method_label(method)
        self.rpc.labels(label).observe(seconds)
        if failed:
            self.rpc_errors.labels(label).inc()

    # --- read at scrape time -------------------------------------------------------------
    def bind(self, engine) -> None:
        """Gauges read from the engine when scraped."""
        from pallet.engine.events import bus_of
        from pallet.engine.system import PALLET_VERSION, _daemon_id

        containers = engine.containers
        for state, key in (("running", "running"), ("paused", "paused"),
                           ("stopped", "stopped")):
            self.container_states.labels(state).set_function(
                lambda key=key: containers.counts()[key])
        bus = bus_of(engine.kernel)
        self.subscribers.set_function(lambda: bus.listeners)
        uname = platform.uname()
        from pallet.engine.system import _os_release

        os_name, os_version = _os_release()
        self.info.labels(PALLET_VERSION, "", uname.machine, containers.snapshotter,
                         uname.release, os_name, "linux", os_version,
                         _daemon_id(engine.kernel.paths.data_root)).set(1)
        self.cpus.set(os.cpu_count() or 1)
        from pallet.engine.stats import mem_total
        self.memory.set(mem_total())
        state = engine.kernel.paths.containerd_state
        self.shims.set_function(lambda: shims_running(state))

    # --- the endpoint -------------------------------------------------------------------
    def serve(self, addr: str) -> None:
        """Listen on ``addr`` (HOST:PORT); warn when it is not loopback."""
        from prometheus_client import start_http_server

        host, port = parse_addr(addr)
        if not is_loopback(host):
            log.warning("metrics-addr %s is not a loopback address: anyone who can reach it "
                        "can read the metrics (there is no authentication)", addr)
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise errors.ConfigError(f"metrics-addr {addr}: listen: "
                                     f"{(e.strerror or str(e)).lower()}") from None
        log.info("metrics listen on http://%s/metrics", addr)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def shims_running(containerd_state: str) -> int:
    """Processes that are shims of the containerd whose state is under
    ``containerd_state`` (a shim is started with ``-address`` of its socket)."""
    marker = os.path.join(containerd_state, "").encode()
    n = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"shim" in cmd.split(b"\0", 1)[0] and marker in cmd:
            n += 1
    return n


# --- instrumenting the engine ---------------------------------------------------------------

def _method_label(path: str) -> str:
    """``/containerd.services.tasks.v1.Tasks/Start`` -> ``Tasks/Start``."""
    if not path:
        return "unknown"
    service, _, method = path.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


def instrument_containers(svc, metrics: Metrics) -> None:
    """Time the container service's create, start and delete as dockerd's
    ``container_actions`` does (the methods are wrapped on this object only)."""
    for action, name in (("create", "create"), ("start", "start"), ("delete", "remove")):
        original = getattr(svc, name)

        async def timed(*args, _original=original, _action=action, **kw):
            t0 = time.perf_counter()
            try:
                return await _original(*args, **kw)
            finally:
                metrics.action(_action, time.perf_counter() - t0)
        setattr(svc, name, timed)


def count_events(bus, metrics: Metrics) -> None:
    """Count every event the bus publishes."""
    original = bus.publish

    def publish(*args, **kw):
        metrics.events.inc()
        return original(*args, **kw)
    bus.publish = publish


#: kernel -> the metrics of the engine running on it (only when enabled)
import weakref  # noqa: E402

_BY_KERNEL: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def of(kernel) -> Metrics | None:
    """The metrics of the engine on ``kernel``, None when they are off."""
    return _BY_KERNEL.get(kernel)


class network_timer:
    """``with network_timer(kernel, "connect"):`` times a network action
    (nothing when metrics are off)."""

    def __init__(self, kernel, action: str):
        self.metrics = of(kernel)
        self.action = action

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.metrics is not None:
            self.metrics.network_action(self.action, time.perf_counter() - self.t0)
        return False


class PullCounter:
    """Adds the bytes of ``Downloading`` progress to ``pallet_pull_bytes``."""

    def __init__(self, metrics: Metrics, progress):
        self.metrics = metrics
        self.progress = progress
        self.seen: dict[str, int] = {}

        self.totals: dict[str, int] = {}

    def _add(self, key: str, upto: int) -> None:
        if upto > self.seen.get(key, 0):
            self.metrics.pull_bytes.inc(upto - self.seen.get(key, 0))
            self.seen[key] = upto

    def __call__(self, msg: dict) -> None:
        key = msg.get("id", "")
        if msg.get("status") == "Downloading":
            detail = msg.get("progressDetail") or {}
            self.totals[key] = int(detail.get("total") or 0)
            self._add(key, int(detail.get("current") or 0))
        elif msg.get("status") == "Download complete":
            # the throttled progress may stop short of the whole layer
            self._add(key, self.totals.get(key, 0))
        self.progress(msg)
