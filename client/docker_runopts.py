"""``run``/``create`` flags and their translation into the create request body.

The flags, their kinds and defaults follow docker's; ``build_create_body``
turns parsed flags into the JSON of ``POST /containers/create`` (Config,
HostConfig, NetworkingConfig).
"""

import os
import re

from pallet.client.docker import StatusError
from pallet.client.docker_flags import BOOL, INT, LIST, STR, Flag


def container_flags(run):
    flags = [
        Flag("add-host", kind=LIST, help="Add a custom host-to-IP mapping (host:ip)", metavar="list"),
        Flag("attach", "a", LIST, help="Attach to STDIN, STDOUT or STDERR", metavar="list"),
        Flag("cap-add", kind=LIST, help="Add Linux capabilities", metavar="list"),
        Flag("cap-drop", kind=LIST, help="Drop Linux capabilities", metavar="list"),
        Flag("cgroup-parent", kind=STR, help="Optional parent cgroup for the container"),
        Flag("cidfile", kind=STR, help="Write the container ID to the file"),
        Flag("cpus", kind=STR, help="Number of CPUs", metavar="decimal"),
        Flag("detach-keys", kind=STR, help="Override the key sequence for detaching a container"),
        Flag("dns", kind=LIST, help="Set custom DNS servers", metavar="list"),
        Flag("entrypoint", kind=STR, help="Overwrite the default ENTRYPOINT of the image"),
        Flag("env", "e", LIST, help="Set environment variables", metavar="list"),
        Flag("env-file", kind=LIST, help="Read in a file of environment variables", metavar="list"),
        Flag("expose", kind=LIST, help="Expose a port or a range of ports", metavar="list"),
        Flag("health-cmd", kind=STR, help="Command to run to check health"),
        Flag("health-interval", kind=STR, help="Time between running the check (ms|s|m|h) "
             "(default 0s)", metavar="duration"),
        Flag("health-retries", kind=INT, default=0,
             help="Consecutive failures needed to report unhealthy", metavar="int"),
        Flag("health-start-period", kind=STR, help="Start period for the container to "
             "initialize before starting health-retries countdown (ms|s|m|h) (default 0s)",
             metavar="duration"),
        Flag("health-timeout", kind=STR, help="Maximum time to allow one check to run "
             "(ms|s|m|h) (default 0s)", metavar="duration"),
        Flag("hostname", "h", STR, help="Container host name"),
        Flag("ip", kind=STR, help="IPv4 address (e.g., 172.30.100.104)"),
        Flag("ip6", kind=STR, help="IPv6 address (e.g., 2001:db8::33)"),
        Flag("log-driver", kind=STR, help="Logging driver for the container"),
        Flag("log-opt", kind=LIST, help="Log driver options", metavar="list"),
        Flag("mac-address", kind=STR, help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
        Flag("no-healthcheck", kind=BOOL, help="Disable any container-specified HEALTHCHECK"),
        Flag("init", kind=BOOL, help="Run an init inside the container that forwards signals and reaps processes"),
        Flag("interactive", "i", BOOL, help="Keep STDIN open even if not attached"),
        Flag("ipc", kind=STR, help="IPC mode to use"),
        Flag("label", "l", LIST, help="Set meta data on a container", metavar="list"),
        Flag("link", kind=LIST, help="Add link to another container", metavar="list"),
        Flag("volume-driver", kind=STR, help="Optional volume driver for the container",
             metavar="string"),
        Flag("label-file", kind=LIST, help="Read in a line delimited file of labels", metavar="list"),
        Flag("memory", "m", STR, help="Memory limit", metavar="bytes"),
        Flag("name", kind=STR, help="Assign a name to the container"),
        Flag("network", kind=STR, help="Connect a container to a network", metavar="network"),
        Flag("net", kind=STR, dest="network", hidden=True),
        Flag("pid", kind=STR, help="PID namespace to use"),
        Flag("platform", kind=STR, help="Set platform if server is multi-platform capable"),
        Flag("privileged", kind=BOOL, help="Give extended privileges to this container"),
        Flag("publish", "p", LIST, help="Publish a container's port(s) to the host", metavar="list"),
        Flag("publish-all", "P", BOOL, help="Publish all exposed ports to random ports"),
        Flag("pull", kind=STR, default="missing",
             help='Pull image before running ("always", "missing", "never")'),
        Flag("quiet", "q", BOOL, help="Suppress the pull output"),
        Flag("read-only", kind=BOOL, help="Mount the container's root filesystem as read only"),
        Flag("restart", kind=STR, default="no", help="Restart policy to apply when a container exits"),
        Flag("rm", kind=BOOL, help="Automatically remove the container and its associated anonymous volumes when it exits"),
        Flag("security-opt", kind=LIST, help="Security Options", metavar="list"),
        Flag("shm-size", kind=STR, help="Size of /dev/shm", metavar="bytes"),
        Flag("stop-signal", kind=STR, help="Signal to stop the container"),
        Flag("stop-timeout", kind=INT, default=None, help="Timeout (in seconds) to stop a container",
             metavar="int"),
        Flag("tmpfs", kind=LIST, help="Mount a tmpfs directory", metavar="list"),
        Flag("tty", "t", BOOL, help="Allocate a pseudo-TTY"),
        Flag("user", "u", STR, help="Username or UID (format: <name|uid>[:<group|gid>])"),
        Flag("uts", kind=STR, help="UTS namespace to use"),
        Flag("volume", "v", LIST, help="Bind mount a volume", metavar="list"),
        Flag("workdir", "w", STR, help="Working directory inside the container"),
    ]
    if run:
        flags += [Flag("detach", "d", BOOL, help="Run container in background and print container ID"),
                  Flag("sig-proxy", kind=BOOL, default=True,
                       help="Proxy received signals to the process")]
    return sorted(flags, key=lambda f: f.long)


class BadFlag(Exception):
    """A flag value that does not parse (docker: exit 125 with the message)."""


class FlagValueError(Exception):
    """A flag whose value pflag itself would reject: usage text and exit 125."""


def ram_in_bytes(s, flag="-m, --memory"):
    """A size flag's value through go-units' RAMInBytes ('512m' -> 536870912),
    refused as pflag refuses it."""
    from pallet.units.size import ram_in_bytes as parse

    try:
        return parse(s)
    except ValueError as e:
        why = str(e)
    if why.startswith("invalid size"):
        # the docker CLI names the suffix when the number itself parses
        suffix = re.sub(r"^[\d.]+ ?", "", s)
        if suffix and re.match(r"^[\d.]", s):
            why = "invalid suffix: '%s'" % suffix
    raise FlagValueError('invalid argument "%s" for "%s" flag: %s' % (s, flag, why))


def _read_kv_file(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise BadFlag("open %s: %s" % (path, (e.strerror or str(e)).lower())) from None
    out = []
    for ln in lines:
        ln = ln.lstrip()
        if not ln or ln.startswith("#"):
            continue
        key, eq, value = ln.partition("=")
        if any(ch.isspace() for ch in key):
            raise BadFlag("%s '%s' contains whitespaces" % (what, key))
        if eq:
            out.append(key + "=" + value)
        elif what == "variable":
            if key in os.environ:
                out.append(key + "=" + os.environ[key])
        else:
            out.append(key)
    return out


def parse_env(opts):
    env = []
    for path in opts.env_file:
        env.extend(_read_kv_file(path, "variable"))
    for e in opts.env:
        key, eq, _ = e.partition("=")
        if not key:
            raise BadFlag("invalid environment variable: %s" % e)
        if not eq and key in os.environ:
            e = key + "=" + os.environ[key]
        env.append(e)
    return env


def parse_labels(opts):
    labels = {}
    for path in opts.label_file:
        for ln in _read_kv_file(path, "label"):
            k, _, v = ln.partition("=")
            labels[k] = v
    for lbl in opts.label:
        k, _, v = lbl.partition("=")
        labels[k] = v
    return labels


def _port_range(s):
    a, dash, b = s.partition("-")
    if not a.isdigit() or (dash and not b.isdigit()):
        raise BadFlag("invalid containerPort: %s" % s)
    lo, hi = int(a), int(b) if dash else int(a)
    if hi < lo or hi > 65535:
        raise BadFlag("invalid port range: %s" % s)
    return lo, hi


def parse_publish(specs, exposes):
    """-p and --expose to (ExposedPorts, PortBindings)."""
    exposed, bindings = {}, {}
    for spec in specs:
        rest, slash, proto = spec.rpartition("/")
        if not slash:
            rest, proto = spec, "tcp"
        proto = proto.lower() or "tcp"
        ip = ""
        if rest.startswith("["):
            end = rest.find("]")
            ip, rest = rest[1:end], rest[end + 2:]
            parts = rest.split(":")
            host_port, cport = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        else:
            parts = rest.split(":")
            if len(parts) == 1:
                host_port, cport = "", parts[0]
            elif len(parts) == 2:
                host_port, cport = parts
            elif len(parts) == 3:
                ip, host_port, cport = parts
            else:
                ip, host_port, cport = ":".join(parts[:-2]), parts[-2], parts[-1]
        if not cport:
            raise BadFlag("no port specified: %s<empty>" % spec)
        clo, chi = _port_range(cport)
        if host_port:
            hlo, hhi = _port_range(host_port)
            if (hhi - hlo) != (chi - clo) and hlo != hhi:
                raise BadFlag("invalid ranges specified for container and host Ports: %s and %s"
                              % (cport, host_port))
        for i, p in enumerate(range(clo, chi + 1)):
            key = "%d/%s" % (p, proto)
            exposed[key] = {}
            if host_port:
                hp = str(hlo + i) if hlo != hhi else (str(hlo) if clo == chi else "%d-%d" % (hlo, hhi))
            else:
                hp = ""
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    for e in exposes:
        port, slash, proto = e.partition("/")
        lo, hi = _port_range(port)
        for p in range(lo, hi + 1):
            exposed.setdefault("%d/%s" % (p, proto or "tcp"), {})
    return exposed, bindings


def parse_duration(text, flag):
    """A duration flag's value through Go's time.ParseDuration (``1m30s``,
    ``500ms``), in nanoseconds; refused as pflag refuses it."""
    from pallet.units.duration import parse_go_duration

    try:
        return parse_go_duration(text) if text else 0
    except ValueError as e:
        raise FlagValueError('invalid argument "%s" for "%s" flag: %s' % (text, flag, e)) from None


def parse_healthcheck(opts):
    """The --health-* and --no-healthcheck flags as Config.Healthcheck (None: none given)."""
    given = [f for f in ("health_cmd", "health_interval", "health_timeout",
                         "health_start_period") if getattr(opts, f)] + \
        (["health_retries"] if opts.health_retries else [])
    if opts.no_healthcheck:
        if given:
            raise BadFlag("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    hc = {"Test": ["CMD-SHELL", opts.health_cmd] if opts.health_cmd else None}
    for flag, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                      ("health_start_period", "StartPeriod")):
        value = parse_duration(getattr(opts, flag) or "0", "--" + flag.replace("_", "-"))
        if value < 0:
            raise BadFlag("--%s cannot be negative" % flag.replace("_", "-"))
        hc[key] = value
    if opts.health_retries < 0:
        raise BadFlag("--health-retries cannot be negative")
    hc["Retries"] = opts.health_retries
    return hc


def parse_restart(value):
    if not value or value == "no":
        return {"Name": "no", "MaximumRetryCount": 0}
    name, _, count = value.partition(":")
    if name not in ("always", "unless-stopped", "on-failure"):
        raise BadFlag("invalid restart policy format: %s" % value)
    if count and name != "on-failure":
        raise BadFlag("maximum retry count cannot be used with restart policy '%s'" % name)
    try:
        n = int(count) if count else 0
    except ValueError:
        raise BadFlag("invalid restart policy format: maximum retry count must be an integer") from None
    return {"Name": name, "MaximumRetryCount": n}


def build_create_body(opts, args, run, detach):
    """The JSON body of POST /containers/create from run/create flags."""
    image, cmd = args[0], args[1:]
    attach = [a.lower() for a in opts.attach]
    for a in attach:
        if a not in ("stdin", "stdout", "stderr"):
            raise BadFlag("invalid argument %s for -a, --attach: valid streams are STDIN, STDOUT and STDERR" % a)
    if run and detach and attach:
        raise StatusError("conflicting options: cannot specify both --attach and --detach", 1)
    if detach:
        a_in = a_out = a_err = False
    elif attach:
        a_in, a_out, a_err = "stdin" in attach, "stdout" in attach, "stderr" in attach
    else:
        a_in, a_out, a_err = opts.interactive, True, True
    if not run:  # docker create: streams are attached by a later start -a / attach
        a_in, a_out, a_err = (("stdin" in attach, "stdout" in attach, "stderr" in attach)
                              if attach else (opts.interactive, True, True))
    restart = parse_restart(opts.restart)
    if opts.rm and restart["Name"] != "no":
        raise BadFlag("conflicting options: cannot specify both --restart and --rm")
    exposed, bindings = parse_publish(opts.publish, opts.expose)
    volumes, binds = {}, []
    for v in opts.volume:
        if ":" in v:
            binds.append(v)
        else:
            volumes[v] = {}
    config = {
        "Hostname": opts.hostname,
        "Domainname": "",
        "User": opts.user,
        "AttachStdin": a_in,
        "AttachStdout": a_out,
        "AttachStderr": a_err,
        "Tty": opts.tty,
        "OpenStdin": opts.interactive,
        "StdinOnce": bool(opts.interactive and a_in),
        "Env": parse_env(opts),
        "Cmd": cmd or None,
        "Image": image,
        "Volumes": volumes or None,
        "WorkingDir": opts.workdir,
        "Entrypoint": [opts.entrypoint] if "entrypoint" in opts.given else None,
        "Labels": parse_labels(opts),
    }
    if exposed:
        config["ExposedPorts"] = exposed
    if opts.stop_signal:
        config["StopSignal"] = opts.stop_signal
    if opts.stop_timeout is not None:
        config["StopTimeout"] = opts.stop_timeout
    healthcheck = parse_healthcheck(opts)
    if healthcheck is not None:
        config["Healthcheck"] = healthcheck
    if opts.mac_address:
        config["MacAddress"] = opts.mac_address
    host = {
        "Binds": binds or None,
        "NetworkMode": opts.network or "default",
        "PortBindings": bindings or {},
        "RestartPolicy": restart,
        "AutoRemove": opts.rm,
        "CapAdd": opts.cap_add or None,
        "CapDrop": opts.cap_drop or None,
        "Dns": opts.dns,
        "ExtraHosts": opts.add_host or None,
        "Links": opts.link or None,
        "VolumeDriver": opts.volume_driver or "",
        "Privileged": opts.privileged,
        "PublishAllPorts": opts.publish_all,
        "ReadonlyRootfs": opts.read_only,
        "SecurityOpt": opts.security_opt or None,
        "Init": True if opts.init else None,
        "PidMode": opts.pid,
        "IpcMode": opts.ipc,
        "UTSMode": opts.uts,
        "CgroupParent": opts.cgroup_parent,
    }
    if opts.log_driver or opts.log_opt:
        log_opts = {}
        for item in opts.log_opt:
            k, eq, v = item.partition("=")
            if not eq:
                raise BadFlag("invalid key/value pair format in logging opts: %s" % item)
            log_opts[k] = v
        host["LogConfig"] = {"Type": opts.log_driver or "", "Config": log_opts}
    if opts.tmpfs:
        tmpfs = {}
        for t in opts.tmpfs:
            path, _, o = t.partition(":")
            tmpfs[path] = o
        host["Tmpfs"] = tmpfs
    if opts.memory:
        host["Memory"] = ram_in_bytes(opts.memory)
    if opts.shm_size:
        host["ShmSize"] = ram_in_bytes(opts.shm_size, "--shm-size")
    if opts.cpus:
        try:
            host["NanoCpus"] = int(round(float(opts.cpus) * 1e9))
        except ValueError:
            raise BadFlag('invalid argument "%s" for "--cpus" flag' % opts.cpus) from None
    body = dict(config)
    body["HostConfig"] = host
    net = opts.network
    endpoint = {}
    if opts.ip or opts.ip6:
        endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", opts.ip),
                                                    ("IPv6Address", opts.ip6)) if v}
    if net and net not in ("default", "bridge", "host", "none") and not net.startswith("container:"):
        body["NetworkingConfig"] = {"EndpointsConfig": {net: endpoint}}
    elif endpoint:
        body["NetworkingConfig"] = {"EndpointsConfig": {net or "bridge": endpoint}}
    else:
        body["NetworkingConfig"] = {"EndpointsConfig": {}}
    return body
