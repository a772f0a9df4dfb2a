"""Unix stream sockets: is someone serving this path, and bind one that is
never more open than it should be.

pallet-containerd's gRPC socket, its ttrpc endpoint, each shim's socket and
the shims' zygote all live at paths that a crashed predecessor may have left
behind; each of them first asks whether the path still answers (then it is
in use: refuse, or reuse it), and otherwise replaces the stale file.
"""
from __future__ import annotations

import os
import socket

MAX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL (unix(7))


def answers(path: str, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on the unix socket ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def check_path(path: str) -> None:
    """Refuse a path the kernel cannot bind (longer than 107 bytes)."""
    if len(path.encode()) > MAX_PATH:
        from pallet.core import errors

        raise errors.InvalidArgument(f"socket path {path}: longer than {MAX_PATH} bytes")


def bind_unix(path: str, *, mode: int = 0o600, backlog: int = 64) -> socket.socket:
    """A listening unix stream socket at ``path`` (close-on-exec), replacing a
    stale file there.  The socket is bound under a umask that leaves it at
    most ``mode``, so it is never briefly wider than asked, then chmod'ed to
    exactly ``mode``.  Failures are ``PalletError`` naming the path."""
    from pallet.core import errors

    check_path(path)
    os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        old = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise errors.PalletError(f"listen on {path}: {(e.strerror or str(e)).lower()}") from None
    return sock
