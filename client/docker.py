"""``pallet``: a docker-style command-line client of the Docker Engine API.

Start-up is kept cheap: this module imports only ``os`` and ``sys``; the
flag parser, the HTTP client and each command's module are imported when the
command runs (``pallet --help`` touches no socket and no http code).

The daemon is found with ``-H/--host``, else ``PALLET_HOST``, else
``DOCKER_HOST``, else ``unix:///run/pallet/pallet.sock``.
"""

import os
import sys

PROG = "pallet"
VERSION = "0.1.0"
DEFAULT_HOST = "unix:///run/pallet/pallet.sock"

# name -> (module, function, one-line description)
COMMANDS = {
    "attach": ("cmd_run", "cmd_attach", "Attach local standard input, output, and error streams to a running container"),
    "create": ("cmd_run", "cmd_create", "Create a new container"),
    "exec": ("cmd_run", "cmd_exec", "Execute a command in a running container"),
    "images": ("cmd_images", "cmd_images", "List images"),
    "info": ("cmd_system", "cmd_info", "Display system-wide information"),
    "inspect": ("cmd_containers", "cmd_inspect", "Return low-level information on Docker objects"),
    "kill": ("cmd_containers", "cmd_kill", "Kill one or more running containers"),
    "load": ("cmd_images", "cmd_load", "Load an image from a tar archive or STDIN"),
    "logs": ("cmd_containers", "cmd_logs", "Fetch the logs of a container"),
    "pause": ("cmd_containers", "cmd_pause", "Pause all processes within one or more containers"),
    "port": ("cmd_containers", "cmd_port", "List port mappings or a specific mapping for the container"),
    "ps": ("cmd_containers", "cmd_ps", "List containers"),
    "pull": ("cmd_images", "cmd_pull", "Download an image from a registry"),
    "rename": ("cmd_containers", "cmd_rename", "Rename a container"),
    "restart": ("cmd_containers", "cmd_restart", "Restart one or more containers"),
    "rm": ("cmd_containers", "cmd_rm", "Remove one or more containers"),
    "rmi": ("cmd_images", "cmd_rmi", "Remove one or more images"),
    "run": ("cmd_run", "cmd_run", "Create and run a new container from an image"),
    "save": ("cmd_images", "cmd_save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "start": ("cmd_run", "cmd_start", "Start one or more stopped containers"),
    "stop": ("cmd_containers", "cmd_stop", "Stop one or more running containers"),
    "tag": ("cmd_images", "cmd_tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "top": ("cmd_containers", "cmd_top", "Display the running processes of a container"),
    "unpause": ("cmd_containers", "cmd_unpause", "Unpause all processes within one or more containers"),
    "version": ("cmd_system", "cmd_version", "Show the Docker version information"),
    "wait": ("cmd_containers", "cmd_wait", "Block until one or more containers stop, then print their exit codes"),
}

COMMON = ("run", "exec", "ps", "pull", "images", "version", "info")

# management commands: "pallet container ls" == "pallet ps"
MANAGEMENT = {
    "container": ("Manage containers", {
        "attach": "attach", "create": "create", "exec": "exec", "inspect": "inspect",
        "kill": "kill", "logs": "logs", "ls": "ps", "list": "ps", "ps": "ps", "pause": "pause",
        "port": "port", "rename": "rename", "restart": "restart", "rm": "rm", "remove": "rm",
        "run": "run", "start": "start", "stop": "stop", "top": "top", "unpause": "unpause",
        "wait": "wait"}),
    "image": ("Manage images", {
        "inspect": "inspect", "load": "load", "ls": "images", "list": "images",
        "pull": "pull", "rm": "rmi", "remove": "rmi", "save": "save", "tag": "tag"}),
    "system": ("Manage Docker", {"info": "info"}),
}


class StatusError(Exception):
    """End the command with *code*, after printing *message* (if any) on stderr."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.message = message
        self.code = code


class CLI:
    """What every command gets: output streams, the daemon's address, a lazy API client."""

    prog = PROG

    def __init__(self, host, tls=None, debug=False, command_path=PROG):
        self.host = host
        self.tls = tls
        self.debug = debug
        self.command_path = command_path
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from pallet.client.docker_api import Client
            self._client = Client(self.host, tls=self.tls)
        return self._client

    def out(self, text):
        sys.stdout.write(text)

    def outln(self, text=""):
        sys.stdout.write(text + "\n")

    def err(self, text):
        sys.stdout.flush()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def flag_value(self, convert, value):
        """Convert a flag's value; a ValueError is a flag error (usage text, exit 125)."""
        try:
            return convert(value)
        except ValueError as e:
            raise StatusError("%s\n\nUsage:  %s\n\nRun '%s --help' for more information"
                              % (e, self.usage, self.command_path), 125) from None

    usage = ""

    def parse(self, argv, usage, description, flags, interspersed=True, min_args=None,
              max_args=None, aliases=None):
        """Parse a command's argv with docker's flag rules and arity checks.

        ``--help`` prints the command's help and ends with status 0; a bad
        flag ends with 125, a wrong number of arguments with 1.
        """
        from pallet.client import docker_flags as F
        name = self.command_path
        self.usage = usage
        try:
            opts, args = F.parse(argv, flags, interspersed)
        except F.HelpRequested:
            sys.stdout.write(F.render_help(usage, description, flags, aliases) + "\n")
            raise StatusError(None, 0) from None
        except F.FlagError as e:
            raise StatusError("%s\n\nUsage:  %s\n\nRun '%s --help' for more information"
                              % (e, usage, name), 125) from None
        n = len(args)
        msg = None
        if max_args == 0 and n:
            raise StatusError("%s: '%s' accepts no arguments\n\nUsage:  %s\n\nRun '%s --help' "
                              "for more information" % (PROG, name, usage, name), 1)
        hint = "Run"
        if min_args is not None and max_args is not None and min_args == max_args and n != min_args:
            msg = "requires %d %s" % (min_args, _plural(min_args))
        elif min_args is not None and max_args is not None and not min_args <= n <= max_args:
            msg = "requires at least %d and at most %d %s" % (min_args, max_args, _plural(max_args))
        elif min_args is not None and n < min_args:
            msg = "requires at least %d %s" % (min_args, _plural(min_args))
            hint = "See"
        elif max_args is not None and n > max_args:
            msg = "requires at most %d %s" % (max_args, _plural(max_args))
        if msg:
            raise StatusError("%s: '%s' %s\n\nUsage:  %s\n\n%s '%s --help' for more information"
                              % (PROG, name, msg, usage, hint, name), 1)
        return opts, args


def _plural(n):
    return "argument" if n == 1 else "arguments"


def _global_flags():
    from pallet.client.docker_flags import BOOL, STR, LIST, Flag
    return [
        Flag("config", kind=STR, help="Location of client config files (ignored)"),
        Flag("context", "c", STR, help="Name of the context to use (ignored)"),
        Flag("debug", "D", BOOL, help="Enable debug mode"),
        Flag("host", "H", LIST, help="Daemon socket to connect to", metavar="list"),
        Flag("log-level", "l", STR, default="info",
             help='Set the logging level ("debug", "info", "warn", "error", "fatal")'),
        Flag("tls", kind=BOOL, help="Use TLS; implied by --tlsverify"),
        Flag("tlscacert", kind=STR, help="Trust certs signed only by this CA"),
        Flag("tlscert", kind=STR, help="Path to TLS certificate file"),
        Flag("tlskey", kind=STR, help="Path to TLS key file"),
        Flag("tlsverify", kind=BOOL, help="Use TLS and verify the remote"),
        Flag("version", "v", BOOL, help="Print version information and quit"),
        Flag("help", "h", BOOL, help="Print usage"),
    ]


def main_help():
    """The top-level usage text."""
    lines = ["", "Usage:  %s [OPTIONS] COMMAND" % PROG, "",
             "A docker-style client for pallet (and any Docker Engine API daemon)", "",
             "Common Commands:"]
    for name in COMMON:
        lines.append("  %-11s %s" % (name, COMMANDS[name][2]))
    lines += ["", "Management Commands:"]
    for name, (desc, _) in MANAGEMENT.items():
        lines.append("  %-11s %s" % (name, desc))
    lines += ["", "Commands:"]
    for name in sorted(COMMANDS):
        if name not in COMMON:
            lines.append("  %-11s %s" % (name, COMMANDS[name][2]))
    lines += ["", "Global Options:",
              "  -D, --debug              Enable debug mode",
              "  -H, --host list          Daemon socket to connect to",
              "  -l, --log-level string   Set the logging level (default \"info\")",
              "      --tls                Use TLS; implied by --tlsverify",
              "      --tlscacert string   Trust certs signed only by this CA",
              "      --tlscert string     Path to TLS certificate file",
              "      --tlskey string      Path to TLS key file",
              "      --tlsverify          Use TLS and verify the remote",
              "  -v, --version            Print version information and quit",
              "",
              "Run '%s COMMAND --help' for more information on a command." % PROG, ""]
    return "\n".join(lines)


def _management_help(group):
    desc, subs = MANAGEMENT[group]
    lines = ["", "Usage:  %s %s COMMAND" % (PROG, group), "", desc, "", "Commands:"]
    for sub, target in sorted(subs.items()):
        lines.append("  %-11s %s" % (sub, COMMANDS[target][2]))
    lines += ["", "Run '%s %s COMMAND --help' for more information on a command." % (PROG, group), ""]
    return "\n".join(lines)


def _resolve_host(values):
    if values:
        if len(values) > 1:
            raise StatusError("Specify only one -H", 1)
        return values[-1]
    return os.environ.get("PALLET_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _tls_config(opts):
    verify = opts.tlsverify or bool(os.environ.get("DOCKER_TLS_VERIFY"))
    if not (opts.tls or verify):
        return None
    cert_path = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")

    def pick(value, name):
        if value:
            return value
        p = os.path.join(cert_path, name)
        return p if os.path.exists(p) else None

    return {"verify": verify, "ca": pick(opts.tlscacert, "ca.pem"),
            "cert": pick(opts.tlscert, "cert.pem"), "key": pick(opts.tlskey, "key.pem")}


def run(argv):
    """Run the CLI on *argv* (without the program name); return the exit status."""
    from pallet.client import docker_flags as F
    try:
        opts, rest = F.parse(argv, _global_flags(), interspersed=False)
    except F.HelpRequested:
        sys.stdout.write(main_help() + "\n")
        return 0
    except F.FlagError as e:
        sys.stderr.write("%s\n\nUsage:  %s [OPTIONS] COMMAND [ARG...]\n\nRun '%s --help' for more "
                         "information\n" % (e, PROG, PROG))
        return 125
    if opts.version:
        sys.stdout.write("Pallet version %s\n" % VERSION)
        return 0
    if opts.help or not rest:
        sys.stdout.write(main_help() + "\n")
        return 0
    name, args = rest[0], rest[1:]
    path = "%s %s" % (PROG, name)
    if name in MANAGEMENT:
        _, subs = MANAGEMENT[name]
        if not args or args[0] in ("--help", "-h", "help"):
            sys.stdout.write(_management_help(name) + "\n")
            return 0
        sub = args[0]
        if sub not in subs:
            sys.stderr.write("%s: unknown command: %s %s %s\n\nRun '%s %s --help' for more "
                             "information\n" % (PROG, PROG, name, sub, PROG, name))
            return 1
        path = "%s %s %s" % (PROG, name, sub)
        target = subs[sub]
        if name == "image" and sub == "inspect":
            args = ["--type", "image"] + args[1:]
        elif name == "container" and sub == "inspect":
            args = ["--type", "container"] + args[1:]
        else:
            args = args[1:]
        name = target
    if name == "help":
        if args and args[0] in COMMANDS:
            return run([args[0], "--help"])
        sys.stdout.write(main_help() + "\n")
        return 0
    if name not in COMMANDS:
        sys.stderr.write("%s: unknown command: %s %s\n\nRun '%s --help' for more information\n"
                         % (PROG, PROG, name, PROG))
        return 1
    try:
        host = _resolve_host(opts.host)
        cli = CLI(host, _tls_config(opts), opts.debug, command_path=path)
        modname, funcname, _ = COMMANDS[name]
        import importlib
        mod = importlib.import_module("pallet.client." + modname)
        return getattr(mod, funcname)(cli, args) or 0
    except StatusError as e:
        if e.message:
            sys.stdout.flush()
            sys.stderr.write(e.message + "\n")
        return e.code
    except Exception as e:  # the API client's errors, mapped in one place
        return _report(e, opts.debug)


def _report(e, debug):
    from pallet.client.docker_api import ConnectError, DaemonError
    from pallet.client.docker_template import TemplateError
    sys.stdout.flush()
    if isinstance(e, (ConnectError, DaemonError, TemplateError)):
        sys.stderr.write("%s\n" % e)
        return 1
    if isinstance(e, ValueError):
        sys.stderr.write("%s\n" % e)
        return 125
    if debug:
        raise e
    sys.stderr.write("%s: %s\n" % (PROG, e))
    return 1


def main(argv=None):
    """Console-script entry point."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        code = run(argv)
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # the reader went away (pallet ps | head): no traceback, like docker
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    # run the canonical module, not this __main__ copy: command modules import
    # StatusError from pallet.client.docker and it must be the same class
    from pallet.client.docker import main as _main
    _main()
