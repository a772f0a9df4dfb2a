"""pallet-runc: runc's command line over NsRuntime.

Global options (before the command): ``--root`` (default /run/pallet-runc),
``--log``, ``--log-format text|json``, ``--debug``, ``--systemd-cgroup``
(refused: cgroups are managed through cgroupfs), ``--version``, ``--help``.
Commands: spec, create, start, run, exec, state, list, kill, delete, pause,
resume, ps, update, events, features.

Errors are printed the way runc prints them: one logrus line
(``time=".." level=error msg=".."``, or JSON with ``--log-format json``) to
the log (stderr unless ``--log``), the bare message to stderr as well when
the log is a file, and exit status 1 -- never a traceback.  Only this
module's own small parser runs before the command: the runtime is imported
by the commands that need it.
"""
from __future__ import annotations

import os
import sys

VERSION = "1.1.5-pallet"
SPEC_VERSION = "1.0.2-dev"
DEFAULT_ROOT = "/run/pallet-runc"

USAGE = """NAME:
   {prog} - Open Container Initiative runtime (pallet)

USAGE:
   {prog} [global options] command [command options] [arguments...]

VERSION:
   {version}
spec: {spec}

COMMANDS:
   create   create a container
   delete   delete any resources held by the container often used with detached container
   events   display container events such as OOM notifications, cpu, memory, and IO usage statistics
   exec     execute new process inside the container
   features show the enabled features
   kill     kill sends the specified signal (default: SIGTERM) to the container's init process
   list     lists containers started by runc with the given root
   pause    pause suspends all processes inside the container
   ps       ps displays the processes running inside a container
   resume   resumes all processes that have been previously paused
   run      create and run a container
   spec     create a new specification file
   start    executes the user defined process in a created container
   state    output the state of a container
   update   update container resource constraints
   help, h  Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --debug             enable debug logging
   --log value         set the log file to write runc logs to (default is '/dev/stderr')
   --log-format value  set the log format ('text' (default), or 'json') (default: "text")
   --root value        root directory for storage of container state (default: "{root}")
   --systemd-cgroup    not supported: cgroups are managed through cgroupfs (an error)
   --help, -h          show help
   --version, -v       print the version
"""


class UsageError(Exception):
    """Bad command line: printed like urfave/cli does, exit status 1 (3 for an unknown command)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Logger:
    """runc's logrus output: text or JSON lines to a file or stderr."""

    def __init__(self, path: str | None, fmt: str, debug: bool):
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _line(self, level: str, msg: str) -> str:
        import time
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            import json
            return json.dumps({"level": level, "msg": msg, "time": now}) + "\n"
        escaped = msg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'time="{now}" level={level} msg="{escaped}"\n'

    def log(self, level: str, msg: str) -> None:
        line = self._line(level, msg)
        if self.path:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            except OSError:
                sys.stderr.write(line)
        else:
            sys.stderr.write(line)

    def warning(self, msg: str) -> None:
        self.log("warning", msg)

    def error(self, msg: str) -> None:
        self.log("error", msg)
        if self.path:
            sys.stderr.write(msg + "\n")

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self.log("debug", msg)


# --- a small urfave/cli-like option parser ----------------------------------------------

def parse(args: list[str], spec: dict[str, str]) -> tuple[dict, list[str]]:
    """Parse flags up to the first positional argument (urfave/cli stops there).

    ``spec`` maps each flag spelling (``--bundle``, ``-b``) to its canonical
    name followed by ``=`` when it takes a value (``"bundle="``), ``=*`` when
    it may be repeated (a list).
    """
    opts: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        if name not in spec and not name.startswith("--") and "-" + name in spec:
            name = "-" + name  # urfave/cli (Go's flag) accepts -root for --root
        if name not in spec:
            raise UsageError(f"flag provided but not defined: {name}")
        canonical = spec[name]
        if canonical.endswith(("=", "=*")):
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: {name}")
                value = args[i]
            if canonical.endswith("=*"):  # may be repeated: a list
                opts.setdefault(canonical[:-2], []).append(value)
            else:
                opts[canonical[:-1]] = value
        else:
            opts[canonical] = value.lower() not in ("false", "0") if eq else True
        i += 1
    return opts, args[i:]


_GLOBAL = {"--root": "root=", "--log": "log=", "--log-format": "log_format=", "--debug": "debug",
           "--systemd-cgroup": "systemd_cgroup", "--criu": "criu=", "--rootless": "rootless=",
           "--help": "help", "-h": "help", "--version": "version", "-v": "version"}
_CREATE = {"--bundle": "bundle=", "-b": "bundle=", "--pid-file": "pid_file=",
           "--console-socket": "console_socket=", "--no-pivot": "no_pivot",
           "--no-new-keyring": "no_new_keyring", "--preserve-fds": "preserve_fds=",
           "--help": "help", "-h": "help"}
_RUN = dict(_CREATE, **{"--detach": "detach", "-d": "detach", "--keep": "keep"})
_KILL = {"--all": "all", "-a": "all", "--help": "help", "-h": "help"}
_DELETE = {"--force": "force", "-f": "force", "--help": "help", "-h": "help"}
_LIST = {"--quiet": "quiet", "-q": "quiet", "--format": "format=", "-f": "format=",
         "--help": "help", "-h": "help"}
_SPEC = {"--bundle": "bundle=", "-b": "bundle=", "--rootless": "rootless",
         "--help": "help", "-h": "help"}
_PLAIN = {"--help": "help", "-h": "help"}
_EXEC = {"--console-socket": "console_socket=", "--cwd": "cwd=", "--env": "env=*", "-e": "env=*",
         "--tty": "tty", "-t": "tty", "--user": "user=", "-u": "user=",
         "--additional-gids": "gids=*", "-g": "gids=*", "--process": "process=", "-p": "process=",
         "--detach": "detach", "-d": "detach", "--pid-file": "pid_file=",
         "--no-new-privs": "no_new_privs", "--cap": "cap=*", "-c": "cap=*",
         "--preserve-fds": "preserve_fds=", "--process-label": "label=", "--apparmor": "apparmor=",
         "--ignore-paused": "ignore_paused", "--cgroup": "cgroup=*",
         "--help": "help", "-h": "help"}
_PS = {"--format": "format=", "-f": "format=", "--help": "help", "-h": "help"}
_UPDATE = {"--resources": "resources=", "-r": "resources=", "--blkio-weight": "blkio_weight=",
           "--cpu-period": "cpu_period=", "--cpu-quota": "cpu_quota=", "--cpu-share": "cpu_share=",
           "--cpu-rt-period": "cpu_rt_period=", "--cpu-rt-runtime": "cpu_rt_runtime=",
           "--cpuset-cpus": "cpuset_cpus=", "--cpuset-mems": "cpuset_mems=",
           "--kernel-memory": "kernel_memory=", "--kernel-memory-tcp": "kernel_memory_tcp=",
           "--memory": "memory=", "--memory-reservation": "memory_reservation=",
           "--memory-swap": "memory_swap=", "--pids-limit": "pids_limit=",
           "--l3-cache-schema": "l3=", "--mem-bw-schema": "mem_bw=",
           "--help": "help", "-h": "help"}
_EVENTS = {"--stats": "stats", "--interval": "interval=", "--help": "help", "-h": "help"}


class Cli:
    def __init__(self, prog: str, gopts: dict, log: Logger):
        self.prog = prog
        self.root = os.path.abspath(gopts.get("root") or DEFAULT_ROOT)
        self.log = log
        self._runtime = None

    @property
    def runtime(self):
        if self._runtime is None:
            from pallet.plugins.runtime_ns.runtime import NsRuntime
            self._runtime = NsRuntime(self.root, warn=self.log.warning)
        return self._runtime

    @staticmethod
    def _one_id(cmd: str, rest: list[str], maximum: int = 1) -> str:
        if not rest or len(rest) > maximum:
            raise UsageError(f'{cmd}: "{cmd}" requires exactly 1 argument(s)' if maximum == 1 else
                             f'{cmd}: "{cmd}" requires a minimum of 1 argument(s)')
        return rest[0]

    # --- commands --------------------------------------------------------------------
    def cmd_spec(self, args):
        opts, rest = parse(args, _SPEC)
        from pallet.plugins.runtime_ns.specgen import default_spec, rootless_spec
        import json
        bundle = opts.get("bundle") or "."
        path = os.path.join(bundle, "config.json")
        if os.path.exists(path):
            raise RuntimeError("File config.json exists. Remove it first.")
        spec = rootless_spec() if opts.get("rootless") else default_spec()
        with open(path, "w") as f:
            f.write(json.dumps(spec, indent="\t"))
        return 0

    def _create(self, opts, cid) -> int:
        bundle = opts.get("bundle") or os.getcwd()
        self.runtime.init_loader = _builtin_init
        try:
            preserve = int(opts.get("preserve_fds") or 0)
        except ValueError:
            raise UsageError(f'invalid value "{opts.get("preserve_fds")}" for flag -preserve-fds')
        return self.runtime.create(cid, bundle, stdin=0, stdout=1, stderr=2,
                                   terminal_socket=opts.get("console_socket"),
                                   pid_file=opts.get("pid_file"),
                                   no_pivot=bool(opts.get("no_pivot")), preserve_fds=preserve)

    def cmd_create(self, args):
        opts, rest = parse(args, _CREATE)
        cid = self._one_id("create", rest)
        try:
            self._create(opts, cid)
        except Exception as e:
            raise _Failed(f"{self.prog} create failed: {_message(e)}") from None
        return 0

    def cmd_run(self, args):
        opts, rest = parse(args, _RUN)
        cid = self._one_id("run", rest)
        rt = self.runtime
        console = master = None
        if not opts.get("detach"):
            from pallet.plugins.runtime_ns.linux import set_child_subreaper
            set_child_subreaper()  # orphans of a shared-pid container come to us
            if not opts.get("console_socket") and _wants_terminal(opts.get("bundle") or "."):
                from pallet.commands.runc_console import ConsoleSocket
                console = ConsoleSocket()  # runc passes the pty to our own stdio
                opts["console_socket"] = console.path
        try:
            try:
                pid = self._create(opts, cid)
                if console is not None:
                    master = console.receive_master()
            finally:
                if console is not None:
                    console.close()
            try:
                rt.start(cid)
            except BaseException:
                rt.delete(cid, force=True)
                raise
        except Exception as e:
            raise _Failed(f"{self.prog} run failed: {_message(e)}") from None
        if opts.get("detach"):
            return 0
        if master is not None:
            from pallet.commands.runc_console import proxy
            code = proxy(master, pid)
        else:
            code = _wait_forwarding(pid)
        if not opts.get("keep"):
            try:
                rt.delete(cid, force=True)
            except Exception as e:
                self.log.error(_message(e))
        return code

    def cmd_start(self, args):
        opts, rest = parse(args, _PLAIN)
        self.runtime.start(self._one_id("start", rest))
        return 0

    def cmd_state(self, args):
        opts, rest = parse(args, _PLAIN)
        import json
        state = self.runtime.state(self._one_id("state", rest))
        sys.stdout.write(json.dumps(state, indent=2) + "\n")
        return 0

    def cmd_list(self, args):
        opts, rest = parse(args, _LIST)
        states = self.runtime.list()
        owner = _owner_name()
        for s in states:
            s["owner"] = owner
        fmt = opts.get("format") or "table"
        if opts.get("quiet"):
            for s in states:
                sys.stdout.write(s["id"] + "\n")
        elif fmt == "json":
            import json
            sys.stdout.write(json.dumps(states or None, separators=(",", ":")) + "\n")
        elif fmt == "table":
            rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
            rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
                     for s in states]
            sys.stdout.write(_tabulate(rows))
        else:
            raise RuntimeError("invalid format option")
        return 0

    def cmd_kill(self, args):
        opts, rest = parse(args, _KILL)
        cid = self._one_id("kill", rest, maximum=2)
        if len(rest) > 2:
            raise UsageError('kill: "kill" requires a maximum of 2 argument(s)')
        sig = parse_signal(rest[1] if len(rest) > 1 else "SIGTERM")
        self.runtime.kill(cid, sig, all=bool(opts.get("all")))
        return 0

    def cmd_delete(self, args):
        opts, rest = parse(args, _DELETE)
        cid = self._one_id("delete", rest)
        from pallet.core.errors import NotFound
        try:
            self.runtime.delete(cid, force=bool(opts.get("force")))
        except NotFound:
            if opts.get("force"):
                return 0  # runc: delete --force of a missing container succeeds
            raise
        return 0

    def cmd_pause(self, args):
        opts, rest = parse(args, _PLAIN)
        self.runtime.pause(self._one_id("pause", rest))
        return 0

    def cmd_resume(self, args):
        opts, rest = parse(args, _PLAIN)
        self.runtime.resume(self._one_id("resume", rest))
        return 0

    def cmd_exec(self, args):
        opts, rest = parse(args, _EXEC)
        if not rest:
            raise UsageError('exec: "exec" requires a minimum of 1 argument(s)')
        cid, argv = rest[0], rest[1:]
        process = self._exec_process(cid, opts, argv)
        try:
            preserve = int(opts.get("preserve_fds") or 0)
        except ValueError:
            raise UsageError(f'invalid value "{opts.get("preserve_fds")}" for flag -preserve-fds')
        console = master = None
        socket_path = opts.get("console_socket")
        if process.get("terminal") and not socket_path and not opts.get("detach"):
            from pallet.commands.runc_console import ConsoleSocket
            console = ConsoleSocket()
            socket_path = console.path
        try:
            try:
                pid = self.runtime.exec(cid, process, stdin=0, stdout=1, stderr=2,
                                        terminal_socket=socket_path,
                                        pid_file=opts.get("pid_file"), preserve_fds=preserve)
                if console is not None:
                    master = console.receive_master()
            finally:
                if console is not None:
                    console.close()
        except Exception as e:
            from pallet.core.errors import NotFound
            if isinstance(e, NotFound):
                raise
            raise _Failed(f"{self.prog} exec failed: {_message(e)}") from None
        if opts.get("detach"):
            return 0
        if master is not None:
            from pallet.commands.runc_console import proxy
            return proxy(master, pid)
        return _wait_forwarding(pid)

    def _exec_process(self, cid: str, opts: dict, argv: list[str]) -> dict:
        """runc's getProcess: --process JSON, or the container's own process
        with the command line's args and overrides."""
        import json
        if opts.get("process"):
            with open(opts["process"]) as f:
                return json.load(f)
        if not argv:
            raise UsageError("exec: args must not be empty")
        state = self.runtime.state(cid)
        with open(os.path.join(state["bundle"], "config.json")) as f:
            process = dict(json.load(f).get("process") or {})
        process["args"] = argv
        process["terminal"] = bool(opts.get("tty"))
        if opts.get("cwd"):
            process["cwd"] = opts["cwd"]
        if opts.get("env"):
            process["env"] = list(process.get("env") or []) + opts["env"]
        if opts.get("user"):
            uid, _, gid = opts["user"].partition(":")
            try:
                process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
            except ValueError:
                raise RuntimeError(f"parsing {opts['user']} as int for uid:gid failed") from None
        if opts.get("gids"):
            process.setdefault("user", {})["additionalGids"] = [int(g) for g in opts["gids"]]
        if opts.get("no_new_privs"):
            process["noNewPrivileges"] = True
        if opts.get("cap"):
            caps = dict(process.get("capabilities") or {})
            for key in ("bounding", "effective", "permitted", "ambient", "inheritable"):
                caps[key] = list(caps.get(key) or []) + opts["cap"]
            process["capabilities"] = caps
        return process

    def cmd_ps(self, args):
        opts, rest = parse(args, _PS)
        if not rest:
            raise UsageError('ps: "ps" requires a minimum of 1 argument(s)')
        cid, ps_args = rest[0], rest[1:]
        pids = self.runtime.pids(cid)
        fmt = opts.get("format") or "table"
        if fmt == "json":
            import json
            sys.stdout.write(json.dumps(pids) + "\n")
            return 0
        if fmt != "table":
            raise RuntimeError("invalid format option")
        # runc runs the host's ps with the options given (default -ef) and
        # keeps the header and the container's lines
        import subprocess
        try:
            out = subprocess.run(["ps"] + (ps_args or ["-ef"]), capture_output=True, text=True)
        except OSError as e:
            raise RuntimeError(f"exec ps: {os.strerror(e.errno).lower()}") from None
        if out.returncode != 0:
            raise RuntimeError(f"ps: {out.stderr.strip() or 'exit status ' + str(out.returncode)}")
        lines = out.stdout.splitlines()
        if not lines:
            return 0
        header = lines[0].split()
        if "PID" not in header:
            raise RuntimeError("couldn't find PID field in ps output")
        col = header.index("PID")
        wanted = set(pids)
        sys.stdout.write(lines[0] + "\n")
        for line in lines[1:]:
            fields = line.split()
            if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
                sys.stdout.write(line + "\n")
        return 0

    def cmd_update(self, args):
        opts, rest = parse(args, _UPDATE)
        cid = self._one_id("update", rest)
        import json
        if opts.get("resources"):
            src = opts["resources"]
            try:
                if src == "-":
                    resources = json.load(sys.stdin)
                else:
                    with open(src) as f:
                        resources = json.load(f)
            except OSError as e:
                raise RuntimeError(f"open {src}: {os.strerror(e.errno).lower()}") from None
            except ValueError as e:
                raise RuntimeError(f"decode resources from {src}: {e}") from None
            if not isinstance(resources, dict):
                raise RuntimeError(f"decode resources from {src}: not a json object")
        else:
            from pallet.commands.runc_flags import resources_from_flags
            resources = resources_from_flags(opts)
        for key in ("l3", "mem_bw"):
            if opts.get(key):
                raise RuntimeError("intel RDT is not supported by pallet-runc")
        from pallet.plugins.runtime_ns.validate import SchemaError, validate_config
        try:
            validate_config({"ociVersion": "1.0.2", "linux": {"resources": resources}})
        except SchemaError as e:
            raise RuntimeError(f"invalid resources: {e}") from None
        self.runtime.update(cid, resources)
        return 0

    def cmd_events(self, args):
        opts, rest = parse(args, _EVENTS)
        cid = self._one_id("events", rest)
        import json
        import time
        from pallet.commands.runc_flags import duration
        interval = duration(opts.get("interval") or "5s")
        while True:
            try:
                data = self.runtime.stats(cid)
            except Exception as e:
                from pallet.core.errors import FailedPrecondition
                if isinstance(e, FailedPrecondition) and not opts.get("stats"):
                    return 0  # the container has stopped: the stream ends, as with runc
                raise
            sys.stdout.write(json.dumps({"type": "stats", "id": cid, "data": data}) + "\n")
            sys.stdout.flush()
            if opts.get("stats"):
                return 0
            time.sleep(interval)

    def cmd_features(self, args):
        opts, rest = parse(args, _PLAIN)
        import json
        from pallet.plugins.runtime_ns.features import features
        sys.stdout.write(json.dumps(features(), indent=4) + "\n")
        return 0


class _Failed(Exception):
    """An error whose message is final (already prefixed)."""


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        from pallet.plugins.runtime_ns.linux import describe
        return describe(e)
    return str(e) or type(e).__name__


def _wants_terminal(bundle: str) -> bool:
    from pallet.plugins.runtime_ns import _jsonlite
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            return bool((_jsonlite.loads(f.read()).get("process") or {}).get("terminal"))
    except (OSError, ValueError):
        return False  # create reports the problem with the bundle


def _builtin_init():
    """The builtin init for specs with org.pallet.init=builtin, without a kernel:
    pallet-runc imports it directly (it is cheap) only when it is installed."""
    try:
        from pallet.plugins.init_tini.init import TiniInit
    except ImportError:
        return None
    return TiniInit()


def _owner_name() -> str:
    uid = os.getuid()
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2] == str(uid):
                    return parts[0]
    except OSError:
        pass
    return str(uid)


def _tabulate(rows) -> str:
    """Go's tabwriter with minwidth 12, padding 3 (runc's list)."""
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths)] + [r[-1]]
        out.append("".join(cells))
    return "\n".join(out) + "\n"


def parse_signal(text: str) -> int:
    """``9``, ``KILL`` or ``SIGKILL`` -> 9 (runc's ParseSignal)."""
    import signal
    if text.isdigit():
        num = int(text)
        if num <= 0 or num >= signal.NSIG:
            raise RuntimeError(f'unknown signal "{text}"')
        return num
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
    if sig is None:
        raise RuntimeError(f'unknown signal "{text}"')
    return int(sig)


def _wait_forwarding(pid: int) -> int:
    """Wait for the container's PID 1, forwarding our signals to it (runc run)."""
    import _signal as signal  # signal.py would import enum: start-up time
    forwarded = [s for s in signal.valid_signals()
                 if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGSEGV,
                              signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGWINCH,
                              signal.SIGURG, signal.SIGPIPE, signal.SIGTTIN, signal.SIGTTOU)]
    signal.pthread_sigmask(signal.SIG_BLOCK, forwarded + [signal.SIGCHLD])
    while True:
        # reap everything that reaches us (subreaper); stop at PID 1
        while True:
            try:
                got, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 255
            if got == 0:
                break
            if got == pid:
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
                    else 128 + os.WTERMSIG(status)
        info = signal.sigtimedwait(forwarded + [signal.SIGCHLD], 1.0)
        if info is not None and info.si_signo != signal.SIGCHLD:
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:
                pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pallet-runc``; returns (and exits with) the status."""
    argv = sys.argv if argv is None else argv
    prog = os.path.basename(argv[0]) if argv else "pallet-runc"
    args = list(argv[1:])
    log = Logger(None, "text", False)
    try:
        gopts, rest = parse(args, _GLOBAL)
        log = Logger(gopts.get("log"), gopts.get("log_format") or "text", bool(gopts.get("debug")))
        if gopts.get("log_format") not in (None, "text", "json"):
            raise UsageError(f"invalid log-format: {gopts['log_format']}")
        if gopts.get("version"):
            sys.stdout.write(f"{prog} version {VERSION}\nspec: {SPEC_VERSION}\n")
            return _exit(0)
        if gopts.get("help") or not rest or rest[0] in ("help", "h"):
            sys.stdout.write(USAGE.format(prog=prog, version=VERSION, spec=SPEC_VERSION, root=DEFAULT_ROOT))
            return _exit(0)
        cmd, cmd_args = rest[0], rest[1:]
        if gopts.get("systemd_cgroup") and cmd not in ("spec", "features", "state", "list"):
            raise UsageError("--systemd-cgroup is not supported by pallet-runc: it manages "
                             "cgroups itself through cgroupfs (drop the flag)")
        cli = Cli(prog, gopts, log)
        log.debug(f"{prog} {cmd}: root {cli.root}, arguments {cmd_args}")
        handler = getattr(cli, "cmd_" + cmd, None)
        if handler is None:
            raise UsageError(f"No help topic for '{cmd}'", code=3)
        if "--help" in cmd_args[:1] or "-h" in cmd_args[:1]:
            sys.stdout.write(f"USAGE:\n   {prog} {cmd} [command options] <container-id>\n")
            return _exit(0)
        return _exit(handler(cmd_args))
    except UsageError as e:
        msg = str(e)
        if ": " in msg and msg.split(": ", 1)[0] in _COMMANDS:
            msg = f"{prog}: " + msg.split(": ", 1)[1]
        log.error(msg)
        return _exit(e.code)
    except _Failed as e:
        log.error(str(e))
        return _exit(1)
    except KeyboardInterrupt:
        return _exit(130)
    except Exception as e:  # every error is one line, never a traceback
        log.error(_message(e))
        return _exit(1)


_COMMANDS = ("create", "delete", "events", "exec", "features", "kill", "list", "pause", "ps",
             "resume", "run", "spec", "start", "state", "update")


def _exit(code: int) -> int:
    try:
        sys.stdout.flush()
    except OSError:
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
