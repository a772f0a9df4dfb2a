"""pallet-containerd's servers: containerd's gRPC API on a unix socket, and the
ttrpc endpoint (``<socket>.ttrpc``) where shims forward their events."""
from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import socket
import threading

from pallet.core import errors

log = logging.getLogger("pallet.containerd")

MAX_MESSAGE = 16 << 20
#: Wait and Subscribe hold a thread each for as long as they last
MAX_WORKERS = 256


def _in_use(path: str) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class ContainerdServer:
    """The object of the ``containerd`` role: ``serve(address)`` runs until stopped."""

    def __init__(self, kernel, *, shim_debug: bool = False, socket_group: int | None = None):
        self.kernel = kernel
        self.shim_debug = shim_debug
        self.socket_group = socket_group
        self._stop = threading.Event()
        self.backend = None
        self._grpc = None
        self._ttrpc = None

    def build(self, address: str):
        """Create the backend and the gRPC server with every service registered."""
        import grpc

        from .backend import Backend
        from .services import (containers, content, diff, events, images, introspection,
                               leases, namespaces, snapshots, tasks, version)

        self.backend = Backend(self.kernel, address, shim_debug=self.shim_debug)
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                                  thread_name_prefix="grpc"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                     ("grpc.max_send_message_length", MAX_MESSAGE),
                     ("grpc.so_reuseport", 0)])
        for module in (version, namespaces, containers, content, images, snapshots, diff,
                       tasks, events, introspection, leases):
            module.register(server, self.backend)
        self.kernel.hook.pallet_register_grpc_services(kernel=self.kernel, server=server)
        self._grpc = server
        return server

    def _listen(self, address: str) -> None:
        path = address[len("unix://"):] if address.startswith("unix://") else address
        if len(path.encode()) >= 108:
            raise errors.InvalidArgument(f"socket path {path}: longer than 107 bytes")
        os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
        if os.path.exists(path):
            if _in_use(path):
                raise errors.AlreadyExists(f"listen on {path}: address already in use")
            os.unlink(path)
        old = os.umask(0o117)  # the socket is born 0660, never briefly world-writable
        try:
            port = self._grpc.add_insecure_port("unix://" + path)
        finally:
            os.umask(old)
        if not port:
            raise errors.PalletError(f"listen on {path}: cannot bind")
        os.chmod(path, 0o660)
        if self.socket_group is not None:
            os.chown(path, 0, self.socket_group)
        self.socket_path = path

    def _start_ttrpc(self, path: str) -> None:
        from . import ttrpc
        from .services.events import ttrpc_services

        ttrpc_path = path + ".ttrpc"
        if len(ttrpc_path.encode()) >= 108:
            log.warning("no ttrpc endpoint: %s is longer than 107 bytes", ttrpc_path)
            return
        self._ttrpc = ttrpc.Server(ttrpc_path, ttrpc_services(self.backend), mode=0o660)
        self._ttrpc.start()

    def serve(self, address: str) -> None:
        """Listen on ``address``, reconnect to running shims, serve until SIGTERM/SIGINT."""
        self.build(address)
        self._listen(address)
        self._start_ttrpc(self.socket_path)
        restored = self.backend.tasks.restore()
        if restored:
            log.info("reconnected to %d running task(s): %s", len(restored), ", ".join(restored))
        self._grpc.start()
        self._start_zygote()
        self.kernel.hook.pallet_startup(kernel=self.kernel)
        log.info("serving containerd API on %s", self.socket_path)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, lambda *_: self._stop.set())
            except ValueError:  # not the main thread (embedded): stop() ends it
                pass
        try:
            while not self._stop.wait(1):
                pass
        finally:
            self.shutdown()

    def _start_zygote(self) -> None:
        if os.environ.get("PALLET_SHIM_ZYGOTE", "1") == "0":
            return
        try:
            from .shim import launch

            threading.Thread(target=launch.start_zygote, args=(self.kernel.paths,), daemon=True,
                             name="zygote").start()
        except Exception as e:  # shims still start the slow way
            log.debug("no shim zygote: %s", e)

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        """Stop serving; the shims (and their containers) keep running."""
        log.info("shutting down")
        try:
            self.kernel.hook.pallet_shutdown(kernel=self.kernel)
        except Exception:
            log.exception("shutdown hook failed")
        if self._grpc is not None:
            self._grpc.stop(grace=2).wait(5)
        if self._ttrpc is not None:
            self._ttrpc.close()
        try:
            from .shim import launch

            launch.stop_zygote(self.kernel.paths)
        except Exception:
            pass
        if self.backend is not None:
            self.backend.close()
        path = getattr(self, "socket_path", None)
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass
