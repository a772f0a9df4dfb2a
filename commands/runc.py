"""pallet-runc: runc 1.1's command line over the runtime role.

The runtime comes from the kernel (``pallet.commands.kernel_cache``: the plugin the
configuration names for the ``runtime`` role, runtime_ns by default), and
this module only translates: runc's flags and arguments (``runc_flags``),
its help (``runc_help``), its foreground stdio and terminal
(``runc_console``), and its output -- JSON as Go writes it, logrus lines
(``time="…" level=error msg="…"``, or JSON with ``--log-format json``) to
``--log`` or stderr, the bare message on stderr too when the log is a file,
runc's exit statuses (1, 3 for an unknown command, 255 for ``exec``, the
container's own for ``run`` and ``exec``).  Nothing is imported before it is
needed: the runtime only by the commands that use it.
"""
from __future__ import annotations

import os
import sys

from pallet.commands.runc_flags import UsageError, check_args

#: the name runc gives itself in its messages (app.Name), whatever the binary is called
NAME = "runc"


class Fatal(Exception):
    """An error that ends the command: runc's fatalWithCode (message, status)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# --- logrus's output ---------------------------------------------------------------------

_LEVELS = {"debug": ("DEBU", 37), "info": ("INFO", 36), "warning": ("WARN", 33),
           "error": ("ERRO", 31)}
#: where runc's own error lines come from (logrus reports it with --debug)
CALLER_FATAL = ("main.fatalWithCode", "utils.go:61")
CALLER_WRITER = ("main.(*FatalWriter).Write", "main.go:172")


def _needs_quoting(text: str) -> bool:
    for ch in text:
        if not (ch.isascii() and ch.isalnum() or ch in "-._/@^+"):
            return True
    return False


class Logger:
    """runc's logrus: text or JSON lines, to --log or stderr, debug on request."""

    def __init__(self):
        import time
        self.fd = 2
        self.fmt = "text"
        self.debug_on = False
        self.started = time.monotonic()

    @property
    def to_stderr(self) -> bool:
        return self.fd == 2

    def configure(self, path: str | None, fmt: str, debug: bool) -> None:
        self.debug_on = debug
        if fmt not in ("", "text", "json"):
            raise Fatal(f"invalid log-format: {fmt}")
        self.fmt = fmt or "text"
        if path:
            try:
                self.fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_SYNC |
                                  os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise Fatal(f"open {path}: {_strerror(e)}") from None

    def _time(self) -> str:
        import time
        now = time.localtime()
        zone = now.tm_gmtoff
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", now)
        if not zone:
            return stamp + "Z"
        sign = "-" if zone < 0 else "+"
        return f"{stamp}{sign}{abs(zone) // 3600:02d}:{abs(zone) % 3600 // 60:02d}"

    def line(self, level: str, msg: str, caller=None, fields=()) -> str:
        from pallet.commands.runc_flags import go_quote
        if self.fmt == "json":
            from pallet.oci.jsonlite import go_dumps
            doc = dict(fields)
            doc.update(level=level, msg=msg, time=self._time())
            if caller and self.debug_on:
                doc.update(func=caller[0], file="github.com/opencontainers/runc/" + caller[1])
            return go_dumps(dict(sorted(doc.items()))) + "\n"
        extra = list(fields)
        if caller and self.debug_on:
            extra = [("func", caller[0] + "()"), ("file", caller[1])] + sorted(extra)
        value = lambda v: (go_quote(v) if _needs_quoting(v) else v) if isinstance(v, str) \
            else str(v)  # noqa: E731
        if self.to_stderr and os.isatty(2):
            # logrus on a terminal: coloured level, seconds since start, padded message
            import time
            text, colour = _LEVELS[level]
            out = f"\x1b[{colour}m{text}\x1b[0m[{int(time.monotonic() - self.started):04d}] " \
                  f"{msg:<44} " + "".join(f" \x1b[{colour}m{k}\x1b[0m={value(v)}" for k, v in extra)
            return out.rstrip(" ") + " \n" if not extra else out + "\n"
        parts = [f'time="{self._time()}"', f"level={level}", f"msg={value(msg)}"]
        parts += [f"{k}={value(v)}" for k, v in extra]
        return " ".join(parts) + "\n"

    def log(self, level: str, msg: str, caller=None, fields=()) -> None:
        if level == "debug" and not self.debug_on:
            return
        data = self.line(level, msg, caller, fields).encode()
        try:
            os.write(self.fd, data)
        except OSError:
            pass

    def warning(self, msg: str) -> None:
        self.log("warning", msg)

    def fatal(self, msg: str, code: int, caller=CALLER_FATAL) -> int:
        """fatalWithCode: log the error; also bare on stderr if the log is a file."""
        self.log("error", msg, caller)
        if not self.to_stderr:
            os.write(2, (msg + "\n").encode())
        return code


def _strerror(e: OSError) -> str:
    """Go's text of an errno: strerror in lower case (EACCES: permission denied)."""
    return os.strerror(e.errno).lower() if e.errno else str(e)


# --- the commands ------------------------------------------------------------------------

class Cli:
    """One invocation of pallet-runc: global options, then one command."""

    def __init__(self, prog: str):
        self.prog = prog
        self.log = Logger()
        self.root = None
        self.systemd = False
        self._runtime = None

    @property
    def runtime(self):
        """The runtime role's object on our --root (through the kernel's fast path)."""
        if self._runtime is None:
            from pallet.commands.kernel_cache import load
            kernel = load(("runtime", "init"))
            self._runtime = kernel.provide("runtime").with_root(self.root, log=self.log.log)
        return self._runtime

    def main(self, args: list[str]) -> int:
        from pallet.commands import runc_help
        try:
            gopts, rest = runc_help.GLOBAL.parse(args)
        except UsageError as e:
            _out(f"Incorrect Usage. {e}\n\n" if e.prefix else f"{e}\n")
            _out(runc_help.app_help())
            return self.log.fatal(str(e), 1)
        if gopts.get("help"):
            _out(runc_help.app_help())
            return 0
        if gopts.get("version"):
            _out(f"{NAME} version {runc_help.version_text()}\n")
            return 0
        try:
            self._before(gopts)
        except Fatal as e:
            return self.log.fatal(str(e), e.code)
        if not rest or rest[0] in ("help", "h"):
            return self._help(rest[1:2])
        command = runc_help.BY_NAME.get(rest[0])
        if command is None:
            return self._help(rest[:1])
        try:
            opts, cargs = command.parse(rest[1:])
        except UsageError as e:
            _out(f"Incorrect Usage: {e}\n\n")
            _out(runc_help.command_help(command))
            return self.log.fatal(str(e), 1)
        if opts.get("help"):
            _out(runc_help.command_help(command))
            return 0
        try:
            check_args(self.prog, command, cargs)
            handler = getattr(self, "cmd_" + command.name)
            return handler(opts, cargs)
        except UsageError as e:
            _out(f"{e.prefix}\n\n" if e.prefix.endswith(".") else f"{e.prefix}{e}\n\n")
            _out(runc_help.command_help(command))
            return self.log.fatal(str(e), 1)
        except Fatal as e:
            return self.log.fatal(str(e), e.code)
        except KeyboardInterrupt:
            return 130
        except Exception as e:  # an error of the runtime: one line, never a traceback
            return self.log.fatal(message(e), 1)

    def _before(self, gopts: dict) -> None:
        """runc's app.Before: --root made absolute (never /), then the logger."""
        from pallet.commands.runc_help import DEFAULT_ROOT
        root = gopts.get("root")
        if root is None:
            self.root = DEFAULT_ROOT
        else:
            self.root = os.path.abspath(root) if root else os.getcwd()
            if self.root == "/":
                raise Fatal("Option --root argument should not be set to /")
        self.log.configure(gopts.get("log"), gopts.get("log-format", "text"),
                           bool(gopts.get("debug")))
        self.systemd = bool(gopts.get("systemd-cgroup"))

    def _help(self, topic: list[str]) -> int:
        from pallet.commands import runc_help
        if not topic:
            _out(runc_help.app_help())
            return 0
        command = runc_help.BY_NAME.get(topic[0])
        if command is None:
            # urfave's exit error goes through runc's FatalWriter, newline included
            msg = f"No help topic for '{topic[0]}'\n"
            self.log.log("error", msg, CALLER_WRITER)
            if not self.log.to_stderr:
                os.write(2, msg.encode())
            return 3
        _out(runc_help.command_help(command))
        return 0

    # --- spec, features --------------------------------------------------------------
    def cmd_spec(self, opts, args) -> int:
        from pallet.oci.jsonlite import go_dumps
        from pallet.oci.spec import default_spec, rootless_spec
        _chdir(opts.get("bundle"))
        if os.path.exists("config.json"):
            raise Fatal("File config.json exists. Remove it first")
        spec = rootless_spec() if opts.get("rootless") else default_spec()
        fd = os.open("config.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, go_dumps(spec, "\t").encode())
        finally:
            os.close(fd)
        return 0

    def cmd_features(self, opts, args) -> int:
        from pallet.oci.jsonlite import go_dumps
        _out(go_dumps(self.runtime.features(), "    ") + "\n")
        return 0

    # --- create, run, start --------------------------------------------------------------
    def cmd_create(self, opts, args) -> int:
        return self._start_container("create", opts, args[0])

    def cmd_run(self, opts, args) -> int:
        return self._start_container("run", opts, args[0])

    def _start_container(self, action: str, opts: dict, cid: str) -> int:
        """runc's startContainer: the pid file made absolute, into the bundle,
        then create (and for run: start, wait, delete)."""
        from pallet.commands import runc_console
        pid_file = os.path.abspath(opts["pid-file"]) if opts.get("pid-file") else None
        detach = action == "create" or bool(opts.get("detach"))
        socket = opts.get("console-socket")
        try:
            _chdir(opts.get("bundle"))
            bundle = os.getcwd()
            terminal, owner = _spec_terminal()
            if self.systemd:
                # runc's systemd driver talks to systemd over D-Bus: pallet has none
                raise Fatal("systemd not running on this host, cannot use systemd cgroups "
                            "manager" if not os.path.isdir("/run/systemd/system") else
                            "pallet-runc manages cgroups through cgroupfs only: drop "
                            "--systemd-cgroup")
            if (not detach or not terminal) and socket:
                raise Fatal("cannot use console socket if runc will not detach or allocate tty")
            # socket activation (sd_listen_fds): the fds systemd passed us go
            # first, the preserved ones after them
            listen = _listen_fds()
            preserve = listen + opts.get("preserve-fds", 0)
            fg = None if detach else runc_console.Foreground(terminal, subreaper=not opts.get(
                "no-subreaper"), owner=owner)
            rt = self.runtime
            created = False
            try:
                stdio = fg.child_stdio() if fg else (0, 1, 2)
                pid = rt.create(cid, bundle, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                                terminal_socket=fg.socket_path() if fg and terminal else socket,
                                no_pivot=bool(opts.get("no-pivot")), preserve_fds=preserve,
                                extra_env=(f"LISTEN_FDS={listen}", "LISTEN_PID=1") if listen
                                else ())
                created = True
                if fg is not None:
                    fg.after_create()
                if action == "run":
                    rt.start(cid)
                if pid_file:
                    _write_pid_file(pid_file, pid)
            except BaseException:
                if fg is not None:
                    fg.close()
                if created:
                    _quietly(rt.delete, cid, True)
                raise
        except Fatal as e:
            raise Fatal(f"{NAME} {action} failed: {e}") from None
        except Exception as e:
            raise Fatal(f"{NAME} {action} failed: {message(e)}") from None
        if detach:
            return 0
        status = fg.wait(pid, self.log.log)
        if not opts.get("keep"):
            try:
                rt.delete(cid, True)
            except Exception as e:
                self.log.warning(message(e))
        return status

    def cmd_start(self, opts, args) -> int:
        self.runtime.start(args[0])
        return 0

    # --- state, list, ps, events ---------------------------------------------------------
    def cmd_state(self, opts, args) -> int:
        from pallet.oci.jsonlite import go_dumps
        _out(go_dumps(self.runtime.state(args[0]), "  "))
        return 0

    def cmd_list(self, opts, args) -> int:
        states = self.runtime.list()
        if opts.get("quiet"):
            _out("".join(s["id"] + "\n" for s in states))
            return 0
        fmt = opts.get("format", "table")
        if fmt == "table":
            rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
            rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                     for s in states]
            _out(_tabulate(rows))
        elif fmt == "json":
            from pallet.oci.jsonlite import go_dumps
            _out(go_dumps(states or None) + "\n")
        else:
            raise Fatal("invalid format option")
        return 0

    def cmd_ps(self, opts, args) -> int:
        pids = self.runtime.pids(args[0])
        fmt = opts.get("format", "table")
        if fmt == "json":
            from pallet.oci.jsonlite import go_dumps
            _out(go_dumps(pids or None) + "\n")
            return 0
        if fmt != "table":
            raise Fatal("invalid format option")
        # runc runs the host's ps (default -ef) and keeps the header and the
        # container's lines; ps's own output comes along when it fails
        import subprocess
        try:
            done = subprocess.run(["ps"] + (args[1:] or ["-ef"]), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        except OSError as e:
            raise Fatal(f"exec: \"ps\": {_strerror(e)}") from None
        output = done.stdout.decode(errors="replace")
        if done.returncode != 0:
            raise Fatal(f"exit status {done.returncode}: {output}")
        lines = output.split("\n")
        titles = lines[0].split()
        if "PID" not in titles:
            raise Fatal("couldn't find PID field in ps output")
        index = titles.index("PID")
        out = [lines[0] + "\n"]
        wanted = set(pids)
        for line in lines[1:]:
            if not line:
                continue
            fields = line.split()
            try:
                pid = int(fields[index])
            except (IndexError, ValueError):
                raise Fatal(f'unable to parse pid: strconv.Atoi: parsing '
                            f'"{fields[index] if len(fields) > index else ""}": invalid syntax') \
                    from None
            if pid in wanted:
                out.append(line + "\n")
        _out("".join(out))
        return 0

    def cmd_events(self, opts, args) -> int:
        import time

        from pallet.oci.jsonlite import go_dumps
        cid = args[0]
        rt = self.runtime
        interval = opts.get("interval", 5.0)
        state = rt.state(cid)
        if interval <= 0:
            raise Fatal("duration interval must be greater than 0")
        if state["status"] == "stopped":
            raise Fatal(f"container with id {cid} is not running")
        if opts.get("stats"):
            data = rt.stats(cid)
            _out(go_dumps({"type": "stats", "id": cid, "data": data}) + "\n")
            return 0
        import gc
        gc.freeze()  # a stream that may run for days: collect what it allocates (see
        gc.enable()  # Foreground.wait)
        while True:
            time.sleep(interval)
            try:
                data = rt.stats(cid)
            except Exception as e:
                from pallet.core.errors import NotFound
                if isinstance(e, NotFound):
                    return 0  # deleted: its cgroup is gone, the stream ends
                self.log.log("error", message(e))
                continue
            _out(go_dumps({"type": "stats", "id": cid, "data": data}) + "\n")

    # --- kill, delete, pause, resume, update ---------------------------------------------
    def cmd_kill(self, opts, args) -> int:
        if len(args) > 2:
            raise UsageError(f'{self.prog}: "kill" requires a maximum of 2 argument(s)',
                             prefix="Incorrect Usage.")
        rt = self.runtime
        rt.state(args[0])  # runc loads the container before it reads the signal
        rt.kill(args[0], parse_signal(args[1] if len(args) > 1 else "SIGTERM"),
                all=bool(opts.get("all")))
        return 0

    def cmd_delete(self, opts, args) -> int:
        from pallet.core.errors import NotFound
        try:
            self.runtime.delete(args[0], force=bool(opts.get("force")))
        except NotFound:
            if opts.get("force"):
                return 0  # runc: delete --force of a missing container succeeds
            raise
        return 0

    def cmd_pause(self, opts, args) -> int:
        self.runtime.pause(args[0])
        return 0

    def cmd_resume(self, opts, args) -> int:
        self.runtime.resume(args[0])
        return 0

    def cmd_update(self, opts, args) -> int:
        from pallet.commands.runc_update import resources
        cid = args[0]
        rt = self.runtime
        rt.state(cid)  # runc loads the container before it reads the values
        try:
            res = resources(opts, self.log)
        except ValueError as e:
            raise Fatal(str(e)) from None
        rt.update(cid, res)
        return 0

    def cmd_checkpoint(self, opts, args) -> int:
        self.runtime.state(args[0])
        raise Fatal("checkpoint is not supported: pallet-runc has no CRIU")

    def cmd_restore(self, opts, args) -> int:
        _chdir(opts.get("bundle"))
        _spec_terminal()
        raise Fatal("restore is not supported: pallet-runc has no CRIU")

    # --- exec ------------------------------------------------------------------------------
    def cmd_exec(self, opts, args) -> int:
        """runc's exec: every failure is "exec failed: …" with status 255."""
        try:
            return self._exec(opts, args)
        except Fatal as e:
            raise Fatal(f"exec failed: {e}", 255) from None
        except UsageError:
            raise
        except Exception as e:
            raise Fatal(f"exec failed: {message(e)}", 255) from None

    def _exec(self, opts, args) -> int:
        from pallet.commands import runc_console
        from pallet.commands.runc_exec import process_of, sub_cgroups
        pid_file = os.path.abspath(opts["pid-file"]) if opts.get("pid-file") else None
        cid = args[0]
        rt = self.runtime
        state = rt.state(cid)
        if state["status"] == "stopped":
            raise Fatal("cannot exec in a stopped container")
        if state["status"] == "paused" and not opts.get("ignore-paused"):
            raise Fatal("cannot exec in a paused container (use --ignore-paused to override)")
        if not opts.get("process") and len(args) == 1:
            raise Fatal("process args cannot be empty")
        process = process_of(opts, args[1:], state["bundle"])
        cgroups = sub_cgroups(opts.get("cgroup") or ())
        detach = bool(opts.get("detach"))
        terminal = bool(process.get("terminal"))
        socket = opts.get("console-socket")
        if detach and terminal and not socket:
            raise Fatal("cannot allocate tty if runc will detach without setting console socket")
        if (not detach or not terminal) and socket:
            raise Fatal("cannot use console socket if runc will not detach or allocate tty")
        # the contract's caller reaps: a process forked through an intermediate comes to us
        fg = None if detach else runc_console.Foreground(terminal, subreaper=True)
        try:
            stdio = fg.child_stdio() if fg else (0, 1, 2)
            pid = rt.exec(cid, process, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                          terminal_socket=fg.socket_path() if fg and terminal else socket,
                          preserve_fds=opts.get("preserve-fds", 0),
                          ignore_paused=bool(opts.get("ignore-paused")), cgroups=cgroups)
            if fg is not None:
                fg.after_create()
            if pid_file:
                try:
                    _write_pid_file(pid_file, pid)
                except BaseException:
                    _kill_and_wait(pid)
                    raise
        except BaseException:
            if fg is not None:
                fg.close()
            raise
        if detach:
            return 0
        return fg.wait(pid, self.log.log)


# --- helpers ---------------------------------------------------------------------------

def message(e: BaseException) -> str:
    """An error as runc words it: the runtime's message, an OSError as Go's."""
    if isinstance(e, OSError) and e.strerror:
        if ":" in e.strerror:
            return e.strerror
        what = f"{e.filename}: " if e.filename is not None else ""
        op = "open " if e.filename is not None else ""
        return f"{op}{what}{_strerror(e)}"
    return str(e) or type(e).__name__


def _out(text: str) -> None:
    data = text.encode()
    while data:
        try:
            data = data[os.write(1, data):]
        except BrokenPipeError:
            return


def _listen_fds() -> int:
    """How many fds from 3 on systemd's socket activation passed this process
    (LISTEN_FDS, for LISTEN_PID = our pid), as runc reads them (go-systemd's
    activation.Files); they are not to reach the runtime's other children."""
    import fcntl
    if not os.environ.get("LISTEN_FDS"):
        return 0
    try:
        if int(os.environ.get("LISTEN_PID", "")) != os.getpid():
            return 0
        count = int(os.environ["LISTEN_FDS"])
    except ValueError:
        return 0
    for fd in range(3, 3 + max(count, 0)):
        try:
            fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
        except OSError:
            pass
    return max(count, 0)


def _chdir(bundle: str | None) -> None:
    if bundle:
        try:
            os.chdir(bundle)
        except OSError as e:
            raise Fatal(f"chdir {bundle}: {_strerror(e)}") from None


def _spec_terminal() -> tuple[bool, tuple[int, int]]:
    """process.terminal of ./config.json (runc reads the spec before anything
    else), and the host uid and gid of the container's root."""
    from pallet.oci import jsonlite
    try:
        with open("config.json", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise Fatal("JSON specification file config.json not found") from None
    except OSError as e:
        raise Fatal(f"open config.json: {_strerror(e)}") from None
    try:
        spec = jsonlite.loads(data)
    except ValueError:
        return False, (0, 0)  # the runtime reports what is wrong with it
    if not isinstance(spec, dict):
        return False, (0, 0)
    process = spec.get("process")
    lnx = spec.get("linux") if isinstance(spec.get("linux"), dict) else {}
    owner = []
    for key in ("uidMappings", "gidMappings"):
        host = 0
        for m in lnx.get(key) or ():
            if isinstance(m, dict) and m.get("containerID") == 0:
                host = m.get("hostID", 0)
        owner.append(host)
    return (bool(process.get("terminal")) if isinstance(process, dict) else False), tuple(owner)


def _write_pid_file(path: str, pid: int) -> None:
    """runc's createPidFile: ".<name>" beside it (O_EXCL), then rename."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_SYNC | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise Fatal(f"open {tmp}: {_strerror(e)}") from None
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except OSError as e:
        raise Fatal(f"rename {tmp} {path}: {_strerror(e)}") from None


def _kill_and_wait(pid: int) -> None:
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        pass


def _tabulate(rows) -> str:
    """Go's tabwriter with minwidth 12, padding 3 (runc's list)."""
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths)) + r[-1] + "\n" for r in rows)


def parse_signal(text: str) -> int:
    """runc's parseSignal: any integer as is, else a name with or without SIG."""
    from pallet.commands.runc_flags import go_quote
    body = text[1:] if text[:1] in "+-" else text
    if body.isdigit() and body.isascii():
        return int(text)
    import _signal
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(_signal, name, None) if name.isidentifier() else None
    if not isinstance(number, int) or name in ("SIG_DFL", "SIG_IGN", "SIG_BLOCK",
                                                "SIG_UNBLOCK", "SIG_SETMASK"):
        raise Fatal(f"unknown signal {go_quote(text)}")
    return number


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pallet-runc``; returns (and exits with) the status."""
    argv = sys.argv if argv is None else argv
    prog = os.path.basename(argv[0]) if argv else NAME
    return Cli(prog).main(list(argv[1:]))


def run() -> None:
    """The ``pallet-runc`` script: :func:`main`, then out of the process without
    the interpreter's teardown (freeing every module and object one by one
    costs ~10 ms here, a quarter of ``runc run``).  What teardown would still
    do for us is done first: the atexit functions and the stdio buffers.
    A live thread that is not a daemon is waited for as usual (sys.exit).

    The cyclic garbage collector is off meanwhile: a command lives for
    milliseconds and its start-up (modules, classes) makes no garbage worth
    the collector's passes over it (~2 ms here).  The waits that may last --
    a foreground container or exec, ``events`` -- turn it back on."""
    import gc
    gc.disable()
    status = main() or 0
    threading = sys.modules.get("threading")
    if threading is not None and any(not t.daemon and t is not threading.main_thread()
                                     for t in threading.enumerate()):
        sys.exit(status)
    atexit = sys.modules.get("atexit")   # (nothing registered anything if nobody loaded it)
    if atexit is not None:
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(status & 0xFF)


if __name__ == "__main__":
    run()
