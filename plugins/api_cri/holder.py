"""The process that holds a pod's PID namespace when the pod has no image.

A PID namespace cannot be pinned like the others: it lives while its PID 1
does, and PID 1 must reap the orphans of the pod's processes (what
Kubernetes' pause container does).  The holder is started from a thread
that unshared CLONE_NEWPID (pid_namespaces(7): the thread's next child is
PID 1 of the new namespace; the rest of pallet-containerd is untouched),
in a session of its own so that it outlives a restart of pallet-containerd.

On x86-64 the holder is a 150-byte static ELF executable written once
under the plugin's root: no image, no interpreter, a few KiB of memory per
pod.  Its whole program, in Intel syntax::

        mov eax, 14; xor edi, edi; lea rsi, [rip+set]; xor edx, edx
        mov r10d, 8; syscall                 # rt_sigprocmask(SIG_BLOCK, {SIGCHLD})
    reap:
        mov eax, 61; mov edi, -1; xor esi, esi; mov edx, 1 (WNOHANG)
        xor r10d, r10d; syscall              # wait4(-1, NULL, WNOHANG, NULL)
        test rax, rax; jg reap               # reaped one: look for more
        mov eax, 128; lea rdi, [rip+set]; xor esi, esi; xor edx, edx
        mov r10d, 8; syscall                 # rt_sigtimedwait({SIGCHLD}): sleep
        jmp reap
    set: .quad 1 << 16                       # SIGCHLD (17)

SIGCHLD stays blocked, so it is queued rather than ignored and
rt_sigtimedwait(2) wakes up for it.  Elsewhere the holder is the same loop
in Python (``sys.executable -S``), which costs a few MiB.
"""
from __future__ import annotations

import errno
import os
import platform
import signal
import struct
import subprocess
import sys
import threading
import time

from pallet.core import errors
from pallet.linux.syscalls import CLONE_NEWPID, unshare

NAME = "pallet-pause"
_CODE_X86_64 = bytes.fromhex(
    "b80e00000031ff488d353f00000031d241ba080000000f05b83d000000bf"
    "ffffffff31f6ba010000004531d20f054885c07fe5b880000000488d3d0e"
    "00000031f631d241ba080000000f05ebcb" "0000010000000000")
_BASE = 0x400000
_PYTHON_HOLDER = (
    "import os, signal\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})\n"
    "while True:\n"
    "    try:\n"
    "        while os.waitpid(-1, os.WNOHANG)[0] > 0:\n"
    "            pass\n"
    "    except ChildProcessError:\n"
    "        pass\n"
    "    signal.sigwaitinfo({signal.SIGCHLD})\n")


def elf_x86_64() -> bytes:
    """A static ELF64 executable of the holder loop: header, one PT_LOAD, code."""
    code_at = 64 + 56
    size = code_at + len(_CODE_X86_64)
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, _BASE + code_at, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)
    return header + phdr + _CODE_X86_64


class Holders:
    """Holders of the pods started by this process (to reap them), and the
    binary they run."""

    def __init__(self, directory: str):
        self.dir = directory
        self._children: dict[int, subprocess.Popen] = {}
        self._argv: list[str] | None = None
        self._lock = threading.Lock()
        try:
            self._command()   # written now, before pods (and their CNI plugins) run
        except OSError:
            pass              # (tried again at the first pod, which reports why)

    def _command(self) -> list[str]:
        if self._argv is None:
            if platform.machine() in ("x86_64", "AMD64"):
                path = os.path.join(self.dir, NAME)
                data = elf_x86_64()
                try:
                    with open(path, "rb") as f:
                        same = f.read() == data
                except OSError:
                    same = False
                if not same:
                    os.makedirs(self.dir, mode=0o711, exist_ok=True)
                    tmp = path + ".tmp"
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.chmod(tmp, 0o755)
                    os.rename(tmp, path)
                self._argv = [path]
            else:
                self._argv = [sys.executable, "-S", "-E", "-c", _PYTHON_HOLDER]
        return list(self._argv)

    def start(self, sandbox_id: str) -> int:
        """A new PID namespace held by a new holder; the holder's pid."""
        argv = self._command() + [sandbox_id]
        box: dict = {}

        def run():
            try:
                unshare(CLONE_NEWPID, "unshare pid namespace")
                for attempt in range(100):
                    try:
                        box["proc"] = subprocess.Popen(
                            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True,
                            cwd="/")
                        break
                    except OSError as e:
                        # the binary was just written, and a process another thread
                        # forked meanwhile (a CNI plugin) holds the written file
                        # open until it execs: a moment
                        if e.errno != errno.ETXTBSY or attempt == 99:
                            raise
                        time.sleep(0.01)
            except BaseException as e:  # noqa: BLE001 — handed back to the caller
                box["error"] = e
        t = threading.Thread(target=run, name="pod-holder")
        t.start()
        t.join()
        if "error" in box:
            e = box["error"]
            raise errors.PalletError(f"start the holder of pod {sandbox_id}: {e}") from None
        proc = box["proc"]
        with self._lock:
            self._children[proc.pid] = proc
        return proc.pid

    def stop(self, pid: int, ns_inode: int) -> None:
        """Kill a holder (and with it every process of its PID namespace); a pid
        that is not, or no longer, that holder's is left alone."""
        with self._lock:
            proc = self._children.pop(pid, None)
        if not pid or (proc is None and not self.alive(pid, ns_inode)):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc is not None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    @staticmethod
    def alive(pid: int, ns_inode: int = 0) -> bool:
        """Whether ``pid`` is still a holder (and of the namespace recorded)."""
        if not pid:
            return False
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X"):
                return False
            return not ns_inode or os.stat(f"/proc/{pid}/ns/pid").st_ino == ns_inode
        except (OSError, IndexError):
            return False
