"""pallet-runc's commands, their flags and their help, laid out as runc 1.1's.

The commands, flag names, kinds, defaults and one-line usages are runc's (a
script may look for them); the longer texts are pallet's own words.  The
layout is urfave/cli v1's help templates, flag columns aligned as its
tabwriter aligns them.
"""
from __future__ import annotations

from pallet.commands.runc_flags import (BOOL, DURATION, HELP, INT, INTS, STRING, STRINGS, Command,
                                        Flag)

VERSION = "1.1.5+pallet"
COMMIT = "pallet-0.1.0"
DEFAULT_ROOT = "/run/pallet-runc"

_ID = "<container-id>"
_BUNDLE = Flag("bundle, b", STRING, "path to the root of the bundle directory, defaults to the "
                                    "current directory")
_CONSOLE = Flag("console-socket", STRING, "path to an AF_UNIX socket which will receive a file "
                                          "descriptor referencing the master end of the "
                                          "console's pseudoterminal")
_PID_FILE = Flag("pid-file", STRING, "specify the file to write the process id to")
_NO_PIVOT = Flag("no-pivot", BOOL, "do not use pivot root to jail process inside rootfs (for a "
                                   "rootfs on a ramdisk)")
_NO_KEYRING = Flag("no-new-keyring", BOOL, "do not create a new session keyring for the "
                                           "container")
_PRESERVE = Flag("preserve-fds", INT, "pass N additional file descriptors to the container "
                                      "(stdio + $LISTEN_FDS + N in total)", 0)
_DETACH = Flag("detach, d", BOOL, "detach from the container's process")
_NO_SUBREAPER = Flag("no-subreaper", BOOL, "disable the use of the subreaper used to reap "
                                           "reparented processes")
_FORMAT = Flag("format, f", STRING, "select one of: table or json", "table")
_CRIU_NOTE = ("pallet-runc has no CRIU: the command is understood, and refused with "
              "\"not supported\".")

_WHERE = 'Where "<container-id>" names the instance of the container'

COMMANDS = [
    Command("checkpoint", "checkpoint a running container", f"{_ID}\n\n{_WHERE} to checkpoint.",
            _CRIU_NOTE, [
                Flag("image-path", STRING, "path for saving criu image files"),
                Flag("work-path", STRING, "path for saving work files and logs"),
                Flag("parent-path", STRING, "path for previous criu image files in pre-dump"),
                Flag("leave-running", BOOL, "leave the process running after checkpointing"),
                Flag("tcp-established", BOOL, "allow open tcp connections"),
                Flag("ext-unix-sk", BOOL, "allow external unix sockets"),
                Flag("shell-job", BOOL, "allow shell jobs"),
                Flag("lazy-pages", BOOL, "use userfaultfd to lazily restore memory pages"),
                Flag("status-fd", INT, "criu writes \\0 to this FD once lazy-pages is ready", -1),
                Flag("page-server", STRING, "ADDRESS:PORT of the page server"),
                Flag("file-locks", BOOL, "handle file locks, for safety"),
                Flag("pre-dump", BOOL, "dump the container's memory only, leave it running"),
                Flag("manage-cgroups-mode", STRING, "cgroups mode: 'soft' (default), 'full' "
                                                    "and 'strict'"),
                Flag("empty-ns", STRINGS, "create a namespace, but don't restore its properties"),
                Flag("auto-dedup", BOOL, "enable auto deduplication of memory images"),
            ], ("exact", 1)),
    Command("create", "create a container",
            f"{_ID}\n\n{_WHERE} being created; it must be unique under the --root.",
            "Creates the container of a bundle (a directory with config.json and a root "
            "filesystem)\nand leaves its process waiting: \"start\" runs the process the "
            "spec's args name.",
            [_BUNDLE, _CONSOLE, _PID_FILE, _NO_PIVOT, _NO_KEYRING, _PRESERVE], ("exact", 1)),
    Command("delete", "delete any resources held by the container often used with detached "
                      "container", f"{_ID}\n\n{_WHERE}.",
            "Removes the state, cgroups and mounts of a stopped (or created) container.",
            [Flag("force, f", BOOL, "forcibly delete the container if it is still running "
                                    "(uses SIGKILL)")], ("exact", 1)),
    Command("events", "display container events such as OOM notifications, cpu, memory, and IO "
                      "usage statistics", f"{_ID}\n\n{_WHERE}.",
            "Prints the container's statistics as JSON lines, every --interval.",
            [Flag("interval", DURATION, "set the stats collection interval", 5.0),
             Flag("stats", BOOL, "display the container's stats then exit")], ("exact", 1)),
    Command("exec", "execute new process inside the container",
            f"{_ID} <command> [command options]  || -p process.json {_ID}\n\n"
            f"{_WHERE}, and \"<command>\" the program to run in it (not needed with -p).",
            "", [
                _CONSOLE,
                Flag("cwd", STRING, "current working directory in the container"),
                Flag("env, e", STRINGS, "set environment variables"),
                Flag("tty, t", BOOL, "allocate a pseudo-TTY"),
                Flag("user, u", STRING, "UID (format: <uid>[:<gid>])"),
                Flag("additional-gids, g", INTS, "additional gids"),
                Flag("process, p", STRING, "path to the process.json"),
                _DETACH, _PID_FILE,
                Flag("process-label", STRING, "set the asm process label for the process "
                                              "commonly used with selinux"),
                Flag("apparmor", STRING, "set the apparmor profile for the process"),
                Flag("no-new-privs", BOOL, "set the no new privileges value for the process"),
                Flag("cap, c", STRINGS, "add a capability to the bounding set for the process"),
                _PRESERVE,
                Flag("cgroup", STRINGS, "run the process in an (existing) sub-cgroup(s). Format "
                                        "is [<controller>:]<cgroup>."),
                Flag("ignore-paused", BOOL, "allow exec in a paused container"),
            ], ("min", 1), reorder=False),
    Command("kill", "kill sends the specified signal (default: SIGTERM) to the container's init "
                    "process", f"{_ID} [signal]\n\n{_WHERE}, and \"[signal]\" the signal "
                                "(a name or a number) for its init process.",
            "", [Flag("all, a", BOOL, "send the specified signal to all processes inside the "
                                      "container")], ("min", 1)),
    Command("list", "lists containers started by runc with the given root",
            f"\n\nThe root is the global option \"--root\" (default: \"{DEFAULT_ROOT}\").", "",
            [_FORMAT, Flag("quiet, q", BOOL, "display only container IDs")], ("exact", 0)),
    Command("pause", "pause suspends all processes inside the container",
            f"{_ID}\n\n{_WHERE} to pause. ", "Freezes every process of the container.",
            check=("exact", 1)),
    Command("ps", "ps displays the processes running inside a container",
            f"{_ID} [ps options]", "", [_FORMAT], ("min", 1), reorder=False),
    Command("restore", "restore a container from a previous checkpoint",
            f"{_ID}\n\n{_WHERE} to restore.", _CRIU_NOTE, [
                _CONSOLE,
                Flag("image-path", STRING, "path to criu image files for restoring"),
                Flag("work-path", STRING, "path for saving work files and logs"),
                Flag("tcp-established", BOOL, "allow open tcp connections"),
                Flag("ext-unix-sk", BOOL, "allow external unix sockets"),
                Flag("shell-job", BOOL, "allow shell jobs"),
                Flag("file-locks", BOOL, "handle file locks, for safety"),
                Flag("manage-cgroups-mode", STRING, "cgroups mode: 'soft' (default), 'full' "
                                                    "and 'strict'"),
                Flag("bundle, b", STRING, "path to the root of the bundle directory"),
                _DETACH, _PID_FILE, _NO_SUBREAPER, _NO_PIVOT,
                Flag("empty-ns", STRINGS, "create a namespace, but don't restore its properties"),
                Flag("auto-dedup", BOOL, "enable auto deduplication of memory images"),
                Flag("lazy-pages", BOOL, "use userfaultfd to lazily restore memory pages"),
                Flag("lsm-profile", STRING, "an LSM profile to restore with, as TYPE:NAME"),
                Flag("lsm-mount-context", STRING, "an LSM mount context to restore with"),
            ], ("exact", 1)),
    Command("resume", "resumes all processes that have been previously paused",
            f"{_ID}\n\n{_WHERE} to resume.", "Thaws every process of a paused container.",
            check=("exact", 1)),
    Command("run", "create and run a container",
            f"{_ID}\n\n{_WHERE} being started; it must be unique under the --root.",
            "Creates and starts the container of a bundle, then waits for its process\n"
            "(unless --detach) and removes the container when it exits (unless --keep).",
            [_BUNDLE, _CONSOLE, _DETACH, Flag("keep", BOOL, "do not delete the container after "
                                                             "it exits"),
             _PID_FILE, _NO_SUBREAPER, _NO_PIVOT, _NO_KEYRING, _PRESERVE], ("exact", 1)),
    Command("spec", "create a new specification file", "",
            "Writes config.json, the starting point of a bundle: it runs \"sh\" in \"rootfs\";\n"
            "edit its args for anything else.  --rootless writes one for an unprivileged user.",
            [Flag("bundle, b", STRING, "path to the root of the bundle directory"),
             Flag("rootless", BOOL, "generate a configuration for a rootless container")],
            ("exact", 0)),
    Command("start", "executes the user defined process in a created container",
            f"{_ID}\n\n{_WHERE} to start.", "Lets a created container's process run its program.",
            check=("exact", 1)),
    Command("state", "output the state of a container", f"{_ID}\n\n{_WHERE}.",
            "Prints the container's state as JSON.", check=("exact", 1)),
    Command("update", "update container resource constraints", _ID, "", [
        Flag("resources, r", STRING, "path to a file with the resources (a linux.resources "
                                     "object) or '-' for the standard input; all other options "
                                     "are then ignored"),
        Flag("blkio-weight", INT, "per cgroup weight, from 10 to 1000", 0),
        Flag("cpu-period", STRING, "CPU CFS period to be used for hardcapping (in usecs). 0 to "
                                   "use system default"),
        Flag("cpu-quota", STRING, "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given "
                                  "period"),
        Flag("cpu-share", STRING, "CPU shares (relative weight vs. other containers)"),
        Flag("cpu-rt-period", STRING, "CPU realtime period to be used for hardcapping (in usecs). "
                                      "0 to use system default"),
        Flag("cpu-rt-runtime", STRING, "CPU realtime hardcap limit (in usecs). Allowed cpu time "
                                       "in a given period"),
        Flag("cpuset-cpus", STRING, "CPU(s) to use"),
        Flag("cpuset-mems", STRING, "Memory node(s) to use"),
        Flag("memory", STRING, "Memory limit (in bytes)"),
        Flag("memory-reservation", STRING, "Memory reservation or soft_limit (in bytes)"),
        Flag("memory-swap", STRING, "Total memory usage (memory + swap); set '-1' to enable "
                                    "unlimited swap"),
        Flag("kernel-memory", STRING, "(obsoleted; do not use)", hidden=True),
        Flag("kernel-memory-tcp", STRING, "(obsoleted; do not use)", hidden=True),
        Flag("pids-limit", INT, "Maximum number of pids allowed in the container", 0),
        Flag("l3-cache-schema", STRING, "The string of Intel RDT/CAT L3 cache schema"),
        Flag("mem-bw-schema", STRING, "The string of Intel RDT/MBA memory bandwidth schema"),
    ], ("exact", 1)),
    Command("features", "show the enabled features", "",
            "Prints, as JSON, what this runtime implements (runtime-spec's features document).",
            check=("exact", 0)),
]
BY_NAME = {c.name: c for c in COMMANDS}

GLOBAL = Command("runc", "", "", "", [
    Flag("debug", BOOL, "enable debug logging"),
    Flag("log", STRING, "set the log file to write runc logs to (default is '/dev/stderr')"),
    Flag("log-format", STRING, "set the log format ('text' (default), or 'json')", "text"),
    Flag("root", STRING, "root directory for storage of container state (this should be located "
                         "in tmpfs)", DEFAULT_ROOT),
    Flag("criu", STRING, "path to the criu binary used for checkpoint and restore", "criu"),
    Flag("systemd-cgroup", BOOL, "enable systemd cgroup support, expects cgroupsPath to be of "
                                 "form \"slice:prefix:name\" for e.g. \"system.slice:runc:434234\""),
    Flag("rootless", STRING, "ignore cgroup permission errors ('true', 'false', or 'auto')",
         "auto"),
], reorder=False)
GLOBAL.flags.append(Flag("version, v", BOOL, "print the version"))  # after --help, as urfave

_ABOUT = """runc - Open Container Initiative runtime

This is pallet-runc: pallet's OCI runtime behind runc's command line, so that
tools made for runc (containerd, docker, scripts) can drive it.  A container
comes from a bundle: a directory with a config.json ("runc spec" writes one)
and the root filesystem it names.

    # runc run [ -b bundle ] <container-id>

runs one; the id must be unique under --root, and the bundle defaults to the
current directory."""


def version_text() -> str:
    from pallet.oci.spec import SPEC_VERSION
    return f"{VERSION}\ncommit: {COMMIT}\nspec: {SPEC_VERSION}"


def _default(flag: Flag) -> str:
    if flag.default is None or flag.kind == BOOL:
        return ""
    if flag.kind == STRING:
        return f' (default: "{flag.default}")'
    if flag.kind == DURATION:
        return f" (default: {int(flag.default)}s)"
    return f" (default: {flag.default})"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    """Go's tabwriter (padding 2) over "first\\tsecond" rows."""
    width = max(len(a) for a, _ in rows) + 2
    return [(a.ljust(width) + b).rstrip() if b else a for a, b in rows]


def command_help(command: Command) -> str:
    """``runc COMMAND --help``."""
    flags = [f for f in command.flags if f is not HELP and not f.hidden]
    options = " [command options]" if flags else ""
    args = command.args_usage if command.args_usage else "[arguments...]"
    out = [f"NAME:\n   runc {command.name} - {command.usage}\n",
           f"USAGE:\n   runc {command.name}{options} {args}"]
    if command.description:
        out.append(f"\nDESCRIPTION:\n   {command.description}")
    if flags:
        rows = _table([(f.spellings(), f.usage + _default(f)) for f in flags])
        out.append("\nOPTIONS:\n" + "".join(f"   {r}\n" for r in rows) + "   ")
    return "\n".join(out) + "\n"


def app_help() -> str:
    """``runc --help``."""
    rows = _table([(c.name, c.usage) for c in COMMANDS] +
                  [("help, h", "Shows a list of commands or help for one command")])
    opts = _table([(f.spellings(), f.usage + _default(f)) for f in GLOBAL.flags])
    return (f"NAME:\n   {_ABOUT}\n\nUSAGE:\n   runc [global options] command [command options] "
            f"[arguments...]\n\nVERSION:\n   {version_text()}\n\nCOMMANDS:\n" +
            "".join(f"   {r}\n" for r in rows) + "\nGLOBAL OPTIONS:\n" +
            "\n".join(f"   {r}" for r in opts) + "\n")

