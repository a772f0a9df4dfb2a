"""A tini-like PID 1, run from the interpreter the runtime already loaded.

``run(argv, env)`` is called by runtime_ns in the container's PID 1 after
pivot_root, when the spec carries ``org.pallet.init: builtin``.  It works in
an image with neither Python nor an init binary because nothing is imported
after this module is loaded (the runtime imports it before forking).

Behaviour, as tini's (https://github.com/krallin/tini, tini.c):

* the child runs ``argv`` in its own process group (and takes the terminal
  if stdin is one);
* every catchable signal sent to PID 1 is forwarded to the child, or to its
  whole process group with ``kill_group`` (tini ``-g``, also
  ``TINI_KILL_PROCESS_GROUP=1`` in the environment);
* every zombie that lands on PID 1 is reaped;
* PID 1 exits with the child's exit code, 128+N when a signal N killed it;
* when not PID 1, it registers as a child subreaper so orphans still come to it.
"""
from __future__ import annotations

import _signal as signal  # the C module: signal.py would import enum (start-up time)
import os
import stat

from pallet.linux.syscalls import set_child_subreaper

#: signals tini never blocks: synchronous faults, and job control of the tty
_NOT_FORWARDED = {signal.SIGFPE, signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT,
                  signal.SIGTRAP, signal.SIGSYS, signal.SIGTTIN, signal.SIGTTOU,
                  signal.SIGKILL, signal.SIGSTOP}
_WAITED = frozenset(signal.valid_signals()) - _NOT_FORWARDED


class TiniInit:
    """The object of the ``init`` role (``pallet.core.contracts.Init``)."""

    name = "init_tini"

    def __init__(self, kill_group: bool = False, init_path: str | None = None):
        self.kill_group = kill_group
        self.init_path = init_path

    def prepare_spec(self, spec: dict) -> None:
        """The builtin init through ``org.pallet.init``, or ``init_path``
        bind-mounted at /sbin/docker-init (see :mod:`.spec`); ``ConfigError``
        for an ``init_path`` that is not an executable file."""
        from pallet.plugins.init_tini.spec import add_init

        if self.init_path and not (os.path.isfile(self.init_path)
                                   and os.access(self.init_path, os.X_OK)):
            from pallet.core.errors import ConfigError

            raise ConfigError(f"init_tini: init_path {self.init_path}: no such executable file")
        add_init(spec, self.init_path)

    def run(self, argv, env) -> None:
        """Become the init of ``argv``; never returns (exits with its status)."""
        run(argv, env, kill_group=self.kill_group)


def run(argv, env, *, kill_group: bool | None = None):
    """Fork+exec ``argv`` with ``env`` (a mapping or ``KEY=VALUE`` strings),
    forward signals, reap zombies, exit with the child's status."""
    env = _as_dict(env)
    if kill_group is None:
        kill_group = env.get("TINI_KILL_PROCESS_GROUP", "") not in ("", "0")
    if os.getpid() != 1:
        try:
            set_child_subreaper()
        except OSError:
            pass  # orphans then go to the namespace's init instead
    signal.pthread_sigmask(signal.SIG_SETMASK, _WAITED)
    # tini ignores these so that it may hand the terminal to the child
    signal.signal(signal.SIGTTIN, signal.SIG_IGN)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        child = os.fork()
    except OSError as e:
        _say(f"fork failed: {os.strerror(e.errno).lower()}")
        os._exit(1)
    if child == 0:
        _child(argv, env)
    os._exit(_supervise(child, kill_group))


def _as_dict(env) -> dict:
    if env is None:
        return dict(os.environ)
    if isinstance(env, dict):
        return dict(env)
    out = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _say(msg: str) -> None:
    try:
        os.write(2, f"[init] {msg}\n".encode())
    except OSError:
        pass


def _child(argv, env: dict) -> None:
    try:
        os.setpgid(0, 0)
        try:
            if os.isatty(0):
                os.tcsetpgrp(0, os.getpgrp())
        except OSError:
            pass  # not our terminal: tini carries on the same way
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_DFL)
        # the program starts with nothing blocked, whatever the caller of run()
        # had blocked (runtime_ns keeps every signal blocked until here)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        path = _lookpath(argv[0], env)
        os.execve(path, argv, env)
    except OSError as e:
        _say(f'exec {argv[0]} failed: {os.strerror(e.errno).lower()}')
        os._exit(126 if e.errno == 13 else 127)
    except BaseException as e:  # never fall back into the caller's code
        _say(f"exec {argv[0] if argv else ''} failed: {e}")
        os._exit(127)


def _lookpath(name: str, env: dict) -> str:
    """execvp's search, written out: os.execvpe imports lazily, which must not
    happen after pivot_root."""
    if "/" in name:
        return name
    for d in (env.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        path = (d or ".") + "/" + name
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return path
    raise FileNotFoundError(2, "No such file or directory")


def _supervise(child: int, kill_group: bool) -> int:
    """Wait on signals; forward them, reap on SIGCHLD; the child's status when it ends."""
    status = None
    while status is None:
        try:
            info = signal.sigtimedwait(_WAITED, 1.0)
        except InterruptedError:
            info = None
        if info is not None and info.si_signo != signal.SIGCHLD:
            try:
                os.kill(-child if kill_group else child, info.si_signo)
            except ProcessLookupError:
                pass
        status = _reap(child)
    # the child is gone: collect whatever else has exited, as tini does
    _reap(child)
    return status


def _reap(child: int):
    """Reap every exited process; the child's exit code if it was among them."""
    result = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return result
        if pid == 0:
            return result
        if pid == child:
            if os.WIFSIGNALED(status):
                result = 128 + os.WTERMSIG(status)
            else:
                result = os.WEXITSTATUS(status)
