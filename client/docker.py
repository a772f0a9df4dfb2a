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
    "build": ("cmd_build", "cmd_build", "Build an image from a Dockerfile"),
    "commit": ("cmd_build", "cmd_commit", "Create a new image from a container's changes"),
    "cp": ("cmd_cp", "cmd_cp", "Copy files/folders between a container and the local filesystem"),
    "create": ("cmd_run", "cmd_create", "Create a new container"),
    "events": ("cmd_monitor", "cmd_events", "Get real time events from the server"),
    "exec": ("cmd_run", "cmd_exec", "Execute a command in a running container"),
    "export": ("cmd_cp", "cmd_export", "Export a container's filesystem as a tar archive"),
    "history": ("cmd_images", "cmd_history", "Show the history of an image"),
    "images": ("cmd_images", "cmd_images", "List images"),
    "import": ("cmd_images", "cmd_import", "Import the contents from a tarball to create a filesystem image"),
    "info": ("cmd_system", "cmd_info", "Display system-wide information"),
    "inspect": ("cmd_containers", "cmd_inspect", "Return low-level information on Docker objects"),
    "kill": ("cmd_containers", "cmd_kill", "Kill one or more running containers"),
    "load": ("cmd_images", "cmd_load", "Load an image from a tar archive or STDIN"),
    "login": ("cmd_registry", "cmd_login", "Authenticate to a registry"),
    "logout": ("cmd_registry", "cmd_logout", "Log out from a registry"),
    "logs": ("cmd_containers", "cmd_logs", "Fetch the logs of a container"),
    "pause": ("cmd_containers", "cmd_pause", "Pause all processes within one or more containers"),
    "port": ("cmd_containers", "cmd_port", "List port mappings or a specific mapping for the container"),
    "ps": ("cmd_containers", "cmd_ps", "List containers"),
    "pull": ("cmd_registry", "cmd_pull", "Download an image from a registry"),
    "push": ("cmd_registry", "cmd_push", "Upload an image to a registry"),
    "rename": ("cmd_containers", "cmd_rename", "Rename a container"),
    "restart": ("cmd_containers", "cmd_restart", "Restart one or more containers"),
    "rm": ("cmd_containers", "cmd_rm", "Remove one or more containers"),
    "rmi": ("cmd_images", "cmd_rmi", "Remove one or more images"),
    "run": ("cmd_run", "cmd_run", "Create and run a new container from an image"),
    "save": ("cmd_images", "cmd_save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "start": ("cmd_run", "cmd_start", "Start one or more stopped containers"),
    "stats": ("cmd_monitor", "cmd_stats", "Display a live stream of container(s) resource usage statistics"),
    "stop": ("cmd_containers", "cmd_stop", "Stop one or more running containers"),
    "tag": ("cmd_images", "cmd_tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "top": ("cmd_containers", "cmd_top", "Display the running processes of a container"),
    "unpause": ("cmd_containers", "cmd_unpause", "Unpause all processes within one or more containers"),
    "update": ("cmd_containers", "cmd_update", "Update configuration of one or more containers"),
    "version": ("cmd_system", "cmd_version", "Show the Docker version information"),
    "wait": ("cmd_containers", "cmd_wait", "Block until one or more containers stop, then print their exit codes"),
}

# commands reached only through a management command ("pallet volume ls")
SUBCOMMANDS = {
    "builder prune": ("cmd_build", "cmd_builder_prune", "Remove build cache"),
    "container prune": ("cmd_containers", "cmd_container_prune", "Remove all stopped containers"),
    "image prune": ("cmd_images", "cmd_image_prune", "Remove unused images"),
    "volume create": ("cmd_volumes", "cmd_volume_create", "Create a volume"),
    "volume inspect": ("cmd_volumes", "cmd_volume_inspect", "Display detailed information on one or more volumes"),
    "volume ls": ("cmd_volumes", "cmd_volume_ls", "List volumes"),
    "volume prune": ("cmd_volumes", "cmd_volume_prune", "Remove unused local volumes"),
    "volume rm": ("cmd_volumes", "cmd_volume_rm", "Remove one or more volumes"),
    "network connect": ("cmd_networks", "cmd_network_connect", "Connect a container to a network"),
    "network create": ("cmd_networks", "cmd_network_create", "Create a network"),
    "network disconnect": ("cmd_networks", "cmd_network_disconnect", "Disconnect a container from a network"),
    "network inspect": ("cmd_networks", "cmd_network_inspect", "Display detailed information on one or more networks"),
    "network ls": ("cmd_networks", "cmd_network_ls", "List networks"),
    "network prune": ("cmd_networks", "cmd_network_prune", "Remove all unused networks"),
    "network rm": ("cmd_networks", "cmd_network_rm", "Remove one or more networks"),
    "system df": ("cmd_system", "cmd_system_df", "Show docker disk usage"),
    "system prune": ("cmd_system", "cmd_system_prune", "Remove unused data"),
}

COMMON = ("run", "exec", "ps", "build", "pull", "push", "images", "login", "logout", "version", "info")

# management commands: "pallet container ls" == "pallet ps"; a target with a
# space is a SUBCOMMANDS entry
MANAGEMENT = {
    "builder": ("Manage builds", {"build": "build", "prune": "builder prune"}),
    "container": ("Manage containers", {
        "attach": "attach", "commit": "commit", "cp": "cp", "create": "create", "exec": "exec",
        "export": "export",
        "inspect": "inspect", "kill": "kill", "logs": "logs", "ls": "ps", "list": "ps", "ps": "ps",
        "pause": "pause", "port": "port", "prune": "container prune", "rename": "rename",
        "restart": "restart", "rm": "rm", "remove": "rm", "run": "run", "start": "start",
        "stats": "stats", "stop": "stop", "top": "top", "unpause": "unpause", "update": "update",
        "wait": "wait"}),
    "image": ("Manage images", {
        "build": "build", "history": "history", "import": "import", "inspect": "inspect", "load": "load",
        "ls": "images", "list": "images", "prune": "image prune", "pull": "pull", "push": "push",
        "rm": "rmi", "remove": "rmi", "save": "save", "tag": "tag"}),
    "network": ("Manage networks", {
        "connect": "network connect", "create": "network create",
        "disconnect": "network disconnect", "inspect": "network inspect", "ls": "network ls",
        "list": "network ls", "prune": "network prune", "rm": "network rm",
        "remove": "network rm"}),
    "system": ("Manage Docker", {"df": "system df", "events": "events", "info": "info",
                                 "prune": "system prune"}),
    "volume": ("Manage volumes", {
        "create": "volume create", "inspect": "volume inspect", "ls": "volume ls",
        "list": "volume ls", "prune": "volume prune", "rm": "volume rm",
        "remove": "volume rm"}),
}


def _entry(name):
    return COMMANDS.get(name) or SUBCOMMANDS[name]


class StatusError(Exception):
    """End the command with *code*, after printing *message* (if any) on stderr."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.message = message
        self.code = code


class CLI:
    """What every command gets: output streams, the daemon's address, a lazy API client."""

    prog = PROG

    def __init__(self, host, tls=None, debug=False, command_path=PROG, config_dir=None):
        self.host = host
        self.tls = tls
        self.debug = debug
        self.command_path = command_path
        self.config_dir = config_dir
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
        Flag("config", kind=STR, help="Location of client config files"),
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
        if name not in COMMON and "-" not in name:  # "image-prune": a management sub-command
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
    lines = ["Usage:  %s %s COMMAND" % (PROG, group), "", desc, "", "Commands:"]
    for sub, target in sorted(subs.items()):
        if sub in ("list", "remove") or (sub == "ps" and group == "container"):
            continue  # aliases
        lines.append("  %-11s %s" % (sub, _entry(target)[2]))
    lines += ["", "Run '%s %s COMMAND --help' for more information on a command." % (PROG, group)]
    return "\n".join(lines)


def _resolve_host(values):
    if values:
        if len(values) > 1:
            raise StatusError("Specify only one -H", 1)
        return values[-1]
    return os.environ.get("PALLET_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _tls_config(opts):
    """docker's TLS settings: --tlsverify (or DOCKER_TLS_VERIFY) verifies the
    daemon against the CA; --tls (or DOCKER_TLS) encrypts only; the files
    default to DOCKER_CERT_PATH (else ~/.docker)/{ca,cert,key}.pem."""
    verify = opts.tlsverify if "tlsverify" in opts.given else bool(
        os.environ.get("DOCKER_TLS_VERIFY"))
    tls = opts.tls if "tls" in opts.given else bool(os.environ.get("DOCKER_TLS"))
    if not (tls or verify):
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
        if not args:
            # docker writes this help on stderr (and exits 0)
            sys.stderr.write(_management_help(name) + "\n")
            return 0
        if args[0] in ("--help", "-h", "help"):
            sys.stdout.write(_management_help(name) + "\n")
            return 0
        sub = args[0]
        if sub not in subs:
            sys.stderr.write("%s: unknown command: %s %s %s\n\nUsage:  %s %s COMMAND\n\nRun "
                             "'%s %s --help' for more information\n"
                             % (PROG, PROG, name, sub, PROG, name, PROG, name))
            return 1
        path = "%s %s %s" % (PROG, name, sub)
        target = subs[sub]
        if target in SUBCOMMANDS:
            return _dispatch(opts, target, args[1:], path)
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
    return _dispatch(opts, name, args, path)


def _dispatch(opts, name, args, path):
    """Run one command's function with a CLI object; map its errors."""
    try:
        host = _resolve_host(opts.host)
        cli = CLI(host, _tls_config(opts), opts.debug, command_path=path,
                  config_dir=opts.config or None)
        modname, funcname, _ = _entry(name)
        try:
            # __import__, not importlib: importlib costs an import at start-up
            __import__("pallet.client." + modname)
            func = getattr(sys.modules["pallet.client." + modname], funcname)
        except (ImportError, AttributeError):
            raise StatusError("%s: '%s' is not available in this build of %s"
                              % (PROG, path[len(PROG) + 1:], PROG), 1) from None
        return func(cli, args) or 0
    except StatusError as e:
        if e.message:
            sys.stdout.flush()
            sys.stderr.write(e.message + "\n")
        return e.code
    except Exception as e:  # the API client's errors, mapped in one place
        return _report(e, opts.debug)


def _report(e, debug):
    from pallet.client.docker_api import ConnectError, DaemonError, TLSConfigError
    from pallet.client.docker_template import TemplateError
    sys.stdout.flush()
    if isinstance(e, (ConnectError, DaemonError, TemplateError, TLSConfigError)):
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
