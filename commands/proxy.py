"""pallet-proxy: carries one published port to a container, as docker-proxy does.

    pallet-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 \\
                 -container-ip 172.17.0.2 -container-port 80 [-use-listen-fd]

Flags are docker-proxy's (Go style: one dash or two, ``-flag value`` or
``-flag=value``).  With ``-use-listen-fd`` the socket is already bound (and
for TCP listening) and inherited as fd 3, as dockerd 25 hands it to
docker-proxy: the daemon then knows synchronously whether the port was free.
Without it the proxy binds itself and reports on fd 3, when that is a pipe,
``0`` once listening or ``1`` followed by the error (docker-proxy's
start-up protocol).

It carries the traffic iptables does not see (connections to 127.0.0.1):

* TCP: one thread per direction per connection moving data with splice(2)
  through a pipe, so the bytes never come up to user space (zero copy); an
  end-of-file is passed on as a half close, an error closes both sides;
* UDP: one flow per client address, each with its own connected socket to
  the container so that answers find their way back; flows idle for 90 s
  are dropped (docker-proxy's UDP conntrack timeout), at most 1024 at once.

When ``PALLET_PROXY_PPID`` is set (palletd sets it), the proxy asks the kernel
for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a daemon killed
with -9 leaves no orphan proxy behind.  SIGTERM and SIGINT end it.
Imports are minimal: one such process runs per published port.
"""
from __future__ import annotations

import os
import socket
import sys

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031
UDP_TIMEOUT = 90.0
UDP_MAX_FLOWS = 1024
UDP_BUFFER = 65535


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> dict:
    """docker-proxy's flags, parsed by hand (argparse is slow to import)."""
    opts = {"proto": "tcp", "host-ip": "", "host-port": "-1", "container-ip": "",
            "container-port": "-1", "use-listen-fd": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg in ("-", "--"):
            raise UsageError(f"unexpected argument {arg!r}")
        name = arg.lstrip("-")
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in ("h", "help"):
            raise UsageError("")
        if name not in opts:
            raise UsageError(f"flag provided but not defined: -{name}")
        if name == "use-listen-fd":
            opts[name] = value is None or value.lower() in ("1", "true", "t")
            i += 1
            continue
        if value is None:
            if i + 1 >= len(argv):
                raise UsageError(f"flag needs an argument: -{name}")
            value = argv[i + 1]
            i += 1
        opts[name] = value
        i += 1
    proto = opts["proto"]
    if proto not in ("tcp", "tcp4", "udp", "udp4"):
        raise UsageError(f"unsupported protocol {proto}")
    try:
        host_port = int(opts["host-port"])
        container_port = int(opts["container-port"])
    except ValueError:
        raise UsageError("ports must be numbers") from None
    if not opts["container-ip"] or not 0 < container_port < 65536:
        raise UsageError("-container-ip and -container-port are required")
    if not opts["use-listen-fd"] and (not opts["host-ip"] or not 0 <= host_port < 65536):
        raise UsageError("-host-ip and -host-port are required")
    return {"proto": proto[:3], "host_ip": opts["host-ip"], "host_port": host_port,
            "container_ip": opts["container-ip"], "container_port": container_port,
            "listen_fd": opts["use-listen-fd"]}


def report(ok: bool, message: str = "") -> None:
    """docker-proxy's start-up report on fd 3, when fd 3 is a pipe."""
    import stat
    try:
        if not stat.S_ISFIFO(os.fstat(3).st_mode):
            return
        os.write(3, b"0\n" if ok else b"1\n" + message.encode())
        os.close(3)
    except OSError:
        pass


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG(SIGTERM), then make sure the parent is still the one
    that started us (it may have died before the call)."""
    want = os.environ.get("PALLET_PROXY_PPID")
    if not want:
        return
    import signal

    from pallet.linux.syscalls import prctl
    prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if str(os.getppid()) != want:
        sys.exit(0)


# --- TCP ----------------------------------------------------------------------------------

def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Move ``src``'s bytes to ``dst`` with splice(2) until end of file."""
    import fcntl
    r, w = os.pipe()
    try:
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # over /proc/sys/fs/pipe-max-size: the default size works too
        s, d = src.fileno(), dst.fileno()
        while True:
            n = os.splice(s, w, CHUNK)
            if n == 0:
                break
            while n:
                n -= os.splice(r, d, n)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    except OSError:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    finally:
        os.close(r)
        os.close(w)


def _connection(client: socket.socket, backend_addr) -> None:
    import threading
    try:
        backend = socket.create_connection(backend_addr, timeout=10)
    except OSError:
        client.close()
        return
    backend.settimeout(None)
    for s in (client, backend):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(backend, client), daemon=True)
    back.start()
    _pump(client, backend)
    back.join()
    client.close()
    backend.close()


def serve_tcp(listener: socket.socket, backend_addr) -> None:
    import threading
    threading.stack_size(256 * 1024)
    listener.setblocking(True)
    while True:
        try:
            client, _ = listener.accept()
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno in (24, 23, 105, 12):  # EMFILE, ENFILE, ENOBUFS, ENOMEM: back off
                import time
                time.sleep(0.05)
                continue
            raise
        threading.Thread(target=_connection, args=(client, backend_addr), daemon=True).start()


# --- UDP ----------------------------------------------------------------------------------

def serve_udp(listener: socket.socket, backend_addr) -> None:
    import selectors
    import time
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    flows: dict = {}            # client address -> [backend socket, last use]
    next_sweep = time.monotonic() + UDP_TIMEOUT / 3

    def drop(addr):
        entry = flows.pop(addr, None)
        if entry is not None:
            sel.unregister(entry[0])
            entry[0].close()

    while True:
        for key, _ in sel.select(timeout=UDP_TIMEOUT / 3):
            now = time.monotonic()
            if key.data is None:
                while True:
                    try:
                        data, addr = listener.recvfrom(UDP_BUFFER)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    entry = flows.get(addr)
                    if entry is None:
                        if len(flows) >= UDP_MAX_FLOWS:
                            drop(min(flows, key=lambda a: flows[a][1]))
                        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        b.setblocking(False)
                        try:
                            b.connect(backend_addr)
                        except OSError:
                            b.close()
                            continue
                        entry = flows[addr] = [b, now]
                        sel.register(b, selectors.EVENT_READ, addr)
                    entry[1] = now
                    try:
                        entry[0].send(data)
                    except OSError:
                        pass
            else:
                addr = key.data
                entry = flows.get(addr)
                if entry is None:
                    continue
                while True:
                    try:
                        data = entry[0].recv(UDP_BUFFER)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break  # ICMP port unreachable from the container: keep the flow
                    entry[1] = now
                    try:
                        listener.sendto(data, addr)
                    except OSError:
                        pass
        now = time.monotonic()
        if now >= next_sweep:
            for addr in [a for a, e in flows.items() if now - e[1] > UDP_TIMEOUT]:
                drop(addr)
            next_sweep = now + UDP_TIMEOUT / 3


# --- main ----------------------------------------------------------------------------------

def _listen(a: dict) -> socket.socket:
    if a["listen_fd"]:
        kind = socket.SOCK_STREAM if a["proto"] == "tcp" else socket.SOCK_DGRAM
        return socket.socket(socket.AF_INET, kind, fileno=3)
    if a["proto"] == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((a["host_ip"], a["host_port"]))
        s.listen(512)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a["host_ip"], a["host_port"]))
    return s


def main(argv=None) -> int:
    try:
        a = parse(sys.argv[1:] if argv is None else list(argv))
    except UsageError as e:
        if str(e):
            print(f"pallet-proxy: {e}", file=sys.stderr)
        print("usage: pallet-proxy -proto tcp|udp -host-ip IP -host-port PORT "
              "-container-ip IP -container-port PORT [-use-listen-fd]", file=sys.stderr)
        return 2
    die_with_parent()
    try:
        listener = _listen(a)
    except OSError as e:
        msg = (f"listen {a['proto']}4 {a['host_ip']}:{a['host_port']}: bind: "
               f"{(e.strerror or str(e)).lower()}")
        report(False, msg)
        print(f"pallet-proxy: {msg}", file=sys.stderr)
        return 1
    if not a["listen_fd"]:
        report(True)
    backend = (a["container_ip"], a["container_port"])
    try:
        if a["proto"] == "tcp":
            serve_tcp(listener, backend)
        else:
            serve_udp(listener, backend)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
