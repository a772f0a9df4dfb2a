"""Path resolution confined to a directory, for applying untrusted layers.

Every path is resolved one component at a time with ``O_PATH|O_NOFOLLOW``
directory descriptors: ``..`` stops at the root, absolute names and absolute
symlinks restart from the root, and a symlink met on the way is followed as
if the root were ``/`` (what a chroot does), never out of it.  The kernel's
``openat2(RESOLVE_IN_ROOT)`` does the same; this works on any kernel and lets
the caller create missing directories on the way.
"""
from __future__ import annotations

import collections
import errno
import os
import posixpath
import stat
from typing import Sequence

from pallet.core.errors import InvalidArgument

_MAX_SYMLINKS = 40  # as path_resolution(7)
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_name(name: str) -> list[str]:
    """The components of a tar member name, taken relative to the root:
    ``/a/../../b/`` -> ``["b"]`` (``..`` never climbs above the root)."""
    return [p for p in posixpath.normpath("/" + name).split("/") if p]


class ConfinedRoot:
    """A directory into which paths are resolved without ever leaving it."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def walk(self, parts: Sequence[str], create: bool = False, on_mkdir=None) -> int | None:
        """An ``O_PATH`` descriptor of the directory ``parts`` (caller closes it).

        Symlinks on the way are followed inside the root; missing directories
        are made when ``create`` (``on_mkdir(dirfd, name, relpath)`` then sets
        their attributes), else None is returned.  A component that is not a
        directory raises InvalidArgument.
        """
        stack: list[tuple[int, str]] = [(self.fd, "")]
        queue = collections.deque(parts)
        links = 0
        try:
            while queue:
                comp = queue.popleft()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[0])
                    continue
                cur, rel = stack[-1]
                relpath = f"{rel}/{comp}" if rel else comp
                try:
                    fd = os.open(comp, _DIR_FLAGS, dir_fd=cur)
                except FileNotFoundError:
                    if not create:
                        return None
                    os.mkdir(comp, 0o755, dir_fd=cur)
                    if on_mkdir is not None:
                        on_mkdir(cur, comp, relpath)
                    fd = os.open(comp, _DIR_FLAGS, dir_fd=cur)
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise InvalidArgument(f"{relpath} in {self.path}: not a directory") \
                            from None
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise InvalidArgument(
                            f"{relpath} in {self.path}: too many levels of symbolic links") \
                            from None
                    target = os.readlink(comp, dir_fd=cur)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    queue.extendleft(reversed(target.split("/")))
                    continue
                stack.append((fd, relpath))
            fd = stack.pop()[0] if len(stack) > 1 else os.dup(self.fd)
            return fd
        finally:
            for fd, _ in stack[1:]:
                os.close(fd)

    def lstat(self, parts: Sequence[str]) -> os.stat_result | None:
        """lstat of ``parts`` resolved inside the root (None if absent)."""
        if not parts:
            return os.stat(self.fd)
        pfd = self.walk(parts[:-1])
        if pfd is None:
            return None
        try:
            return os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            os.close(pfd)


def proc_path(dirfd: int, name: str | None = None) -> str:
    # a path through the descriptor's magic link, for the calls (xattrs, chmod
    # of a verified entry) that take no dir_fd: resolution starts from the
    # already-confined directory
    return f"/proc/self/fd/{dirfd}" + (f"/{name}" if name else "")
