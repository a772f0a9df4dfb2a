"""A socket-activation launcher, equivalent to ``systemd-socket-activate``:

    sd_activate.py [-l ADDRESS]... [--fdname NAME[:NAME...]] -- COMMAND [ARG...]

binds each ADDRESS (a unix socket path, or HOST:PORT for tcp), moves the
listening sockets to fds 3, 4, ... and execs COMMAND in this same process
with ``LISTEN_FDS``, ``LISTEN_PID`` (its own pid, which exec keeps) and
``LISTEN_FDNAMES`` set, as systemd does for a service (sd_listen_fds(3)).
"""
import fcntl
import os
import socket
import sys


def _bind(addr: str) -> socket.socket:
    if addr.startswith("/"):
        try:
            os.unlink(addr)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(addr)
        os.chmod(addr, 0o660)
    else:
        host, _, port = addr.rpartition(":")
        s = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host.strip("[]") or "0.0.0.0", int(port)))
    s.listen(128)
    return s


def main(argv: list[str]) -> None:
    addrs, names = [], ""
    i = 0
    while i < len(argv) and argv[i] != "--" and argv[i].startswith("-"):
        if argv[i] == "-l":
            addrs.append(argv[i + 1])
            i += 2
        elif argv[i] == "--fdname":
            names = argv[i + 1]
            i += 2
        else:
            sys.exit(f"sd_activate: unknown option {argv[i]}")
    if i < len(argv) and argv[i] == "--":
        i += 1
    cmd = argv[i:]
    if not addrs or not cmd:
        sys.exit(__doc__)
    socks = [_bind(a) for a in addrs]
    # dup every socket above the target range first, then down to 3.. so that
    # none is overwritten by another's move
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for s in socks]
    for s in socks:
        s.close()
    for n, fd in enumerate(high):
        os.dup2(fd, 3 + n, inheritable=True)
    for fd in high:
        os.close(fd)
    env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_PID=str(os.getpid()))
    if names:
        env["LISTEN_FDNAMES"] = names
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main(sys.argv[1:])
