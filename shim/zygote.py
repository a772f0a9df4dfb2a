"""The zygote: ``pallet-shim -socket PATH zygote``, pallet-containerd's shim factory.

Started once (fork+exec, so safe from the threaded pallet-containerd), it
imports everything a shim needs and gets the runtime role's object (see
:mod:`.roles`), then serves start requests on a unix socket: one JSON object
a line (``{"namespace", "id", "bundle", "address", "socket", "runtime_root",
"ttrpc_address", "debug"}``), answered with one JSON line (``{"address",
"pid"}`` or ``{"error"}``).  Each shim is a fork of the zygote and shares its
pages copy-on-write: no interpreter start, no import, no kernel load per
container (``gc.freeze()`` keeps the collector from touching, hence
copying, the inherited objects; the kernel merges again the pages the
shims copy nonetheless, see :mod:`.heap`).

The zygote is a child subreaper and the shims are its children: it reaps
them when they exit, and it reaps a container whose shim was killed (the
orphan comes to the nearest subreaper), so nothing is left as a zombie even
under an init that does not reap.  It outlives pallet-containerd (a
restarted one connects to the same socket again) and ends when nobody is
connected and no shim of its own is left.

The zygote is single-threaded, which is what makes forking it safe.
"""
from __future__ import annotations

import json
import os
import signal

from pallet.shim import heap, main

#: how long a zygote nobody has connected to waits before it ends
IDLE_TIMEOUT = 30.0


class Zygote:
    def __init__(self, sock_path: str):
        from pallet.shim.loop import Loop

        self.sock_path = sock_path
        self.loop = Loop()
        self.shims: set[int] = set()
        self.clients: dict[int, tuple] = {}   # fd -> (socket, input buffer)
        self.runtime = None
        self.runtime_error = ""
        self.idle_timer = None

    # -- start-up
    def prepare(self) -> None:
        # everything a shim runs, imported once here and shared by every shim
        from pallet.linux import syscalls as sysutil
        from pallet.proto import shim_task  # noqa: F401
        from pallet.shim import (cgroups, events, loop, runtimes, server, service,  # noqa: F401
                                 stdio)
        from pallet.shim import runtime_loader as roles

        sysutil.set_child_subreaper()
        sysutil.set_process_name(f"pallet-shim zygote {self.sock_path}")
        try:
            self.runtime = roles.load_runtime(prepare=roles.PREPARED_BINARIES)
            roles.preload(self.runtime)
        except Exception as e:  # noqa: BLE001 - each Create reports it
            self.runtime_error = str(e)
        self.listener = main.bind_socket(self.sock_path)
        self.listener.setblocking(False)
        self.loop.on_child_exit = self._reaped
        self.loop.watch_children()
        self.loop.add_reader(self.listener.fileno(), self._accept)
        signal.signal(signal.SIGTERM, lambda *_: self.loop.stop())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.idle_timer = self.loop.call_later(IDLE_TIMEOUT, self._maybe_exit)
        merge = _merge_setting()
        import gc

        gc.collect()
        heap.fill_pools()
        gc.freeze()
        if merge != "off":   # after the pools it marks are all there
            from pallet.linux import ksm

            ksm.mark_mergeable()
            if merge == "on":
                ksm.start()

    # -- clients
    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self.clients[conn.fileno()] = (conn, bytearray())
            self.loop.cancel(self.idle_timer)
            self.loop.add_reader(conn.fileno(), lambda fd=conn.fileno(): self._readable(fd))

    def _readable(self, fd: int) -> None:
        conn, buf = self.clients[fd]
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.loop.forget(fd)
            conn.close()
            del self.clients[fd]
            self._maybe_exit()
            return
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                answer = self._spawn(json.loads(line))
            except (ValueError, KeyError, TypeError) as e:
                answer = {"error": f"bad zygote request: {e}"}
            try:
                conn.setblocking(True)
                conn.sendall(json.dumps(answer).encode() + b"\n")
                conn.setblocking(False)
            except OSError:
                pass

    def _spawn(self, req: dict) -> dict:
        opts = main.Options()
        opts.namespace, opts.id = req["namespace"], req["id"]
        opts.address, opts.debug = req.get("address", ""), bool(req.get("debug"))
        opts.socket = req.get("socket", "")
        bundle = os.path.abspath(req["bundle"])

        def in_child():
            self.loop.unwatch_children_in_child()
            for key, env in (("runtime_root", "PALLET_RUNTIME_ROOT"),
                             ("ttrpc_address", "TTRPC_ADDRESS")):
                if req.get(key):
                    os.environ[env] = req[key]
        try:
            address, pid = main.spawn_daemon(opts, bundle, main.socket_path(opts, bundle),
                                              runtime=self.runtime, before_fork=in_child,
                                              fork=heap.fork)
        except Exception as e:  # noqa: BLE001 - answered, not raised
            return {"error": str(e) or type(e).__name__}
        if pid:
            self.shims.add(pid)
        return {"address": address, "pid": pid}

    # -- children and the end
    def _reaped(self, pid: int, _status: int) -> None:
        self.shims.discard(pid)
        if not self.shims:
            self._maybe_exit()

    def _maybe_exit(self) -> None:
        if not self.clients and not self.shims and not _adopted_children():
            self.loop.stop()

    def serve(self) -> int:
        self.loop.run()
        try:
            if os.path.exists(self.sock_path):
                os.unlink(self.sock_path)
        except OSError:
            pass
        return 0


def _merge_setting() -> str:
    """pallet-containerd's ``shim-memory-merge`` (checked when it started)."""
    from pallet.core import errors
    from pallet.core.config import Config

    try:
        return heap.merge_setting(Config.load())
    except errors.PalletError:
        return "mark"  # the file changed since: leave the host's KSM alone


def _adopted_children() -> bool:
    """Whether orphans (containers of killed shims) are still our children."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2:].split()
        if fields[1].decode() == me:
            return True
    return False


def serve(sock_path: str) -> int:
    """Run the zygote on ``sock_path`` until it has nothing left to do."""
    z = Zygote(sock_path)
    z.prepare()
    return z.serve()

