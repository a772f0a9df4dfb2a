"""containerd's gRPC API on a unix socket, over pallet-containerd's service
layer (:mod:`pallet.containerd_services`)."""
from __future__ import annotations

import concurrent.futures
import logging
import os

from pallet.core import errors
from pallet.linux import sockets

log = logging.getLogger("pallet.containerd")

MAX_MESSAGE = 16 << 20
#: Wait and Subscribe hold a thread each for as long as they last
MAX_WORKERS = 256


class ContainerdServer:
    """The object of the ``containerd`` role: containerd's gRPC API.

    ``listen(address)`` binds the unix socket (refusing one that another
    process serves), ``start(services)`` registers every service over
    pallet-containerd's service layer and starts answering, ``stop()`` stops
    answering and removes the socket; containers and shims are left alone.
    """

    def __init__(self, kernel, *, socket_group: int | None = None):
        self.kernel = kernel
        self.socket_group = socket_group
        self.socket_path: str | None = None
        self._grpc = None

    def listen(self, address: str) -> None:
        """Bind ``address`` (a path or ``unix://`` path), mode 0660."""
        import grpc

        path = address[len("unix://"):] if address.startswith("unix://") else address
        sockets.check_path(path)
        os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
        if os.path.exists(path):
            if sockets.answers(path):
                raise errors.AlreadyExists(f"listen on {path}: address already in use")
            os.unlink(path)
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                                  thread_name_prefix="grpc"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                     ("grpc.max_send_message_length", MAX_MESSAGE),
                     ("grpc.so_reuseport", 0)])
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

    def start(self, services) -> None:
        """Register containerd's services (and plugins' through
        ``pallet_register_grpc_services``) over ``services`` and serve."""
        from pallet.plugins.api_grpc.services import (
            containers, content, diff, events, images, introspection, leases, namespaces,
            snapshots, tasks, version)

        for module in (version, namespaces, containers, content, images, snapshots, diff,
                       tasks, events, introspection, leases):
            module.register(self._grpc, services)
        self.kernel.hook.pallet_register_grpc_services(kernel=self.kernel, server=self._grpc,
                                                       services=services)
        self._grpc.start()
        log.info("serving containerd API on %s", self.socket_path)

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        if self._grpc is not None:
            self._grpc.stop(grace=2).wait(5)
            self._grpc = None
        if self.socket_path:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
