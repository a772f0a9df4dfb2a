"""Pure logic of the networking plugins: IPAM, /etc files, DNS messages, port
requests, network requests, pallet-proxy flags, configuration checks."""
from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from pallet.core.errors import AlreadyExists, ConfigError, InvalidArgument, NotFound
from pallet.plugins.net_bridge import dns, etcfiles, networks
from pallet.plugins.net_bridge.driver import check_config
from pallet.plugins.net_bridge.firewall import rules as bridge_rules
from pallet.plugins.net_bridge.ipam import Exhausted, Pool
from pallet.linux.netlink import mac_for
from pallet.plugins.net_proxy import ports
from pallet.commands import proxy


# --- IPAM -----------------------------------------------------------------------------------

def test_ipam_rolls_forward_and_persists(tmp_path):
    path = str(tmp_path / "pool.json")
    p = Pool(path, "10.5.0.0/29", "10.5.0.1")
    got = [p.allocate(f"c{i}") for i in range(3)]
    assert got == ["10.5.0.2", "10.5.0.3", "10.5.0.4"]
    p.release("10.5.0.2")
    # not reused at once: the next ones come first
    assert p.allocate("c3") == "10.5.0.5"
    # a new daemon reads the same allocations and goes on from the last
    q = Pool(path, "10.5.0.0/29", "10.5.0.1")
    assert q.allocated == p.allocated
    assert q.allocate("c4") == "10.5.0.6"
    assert q.allocate("c5") == "10.5.0.2"  # wrapped around
    with pytest.raises(Exhausted, match="no available IPv4 addresses"):
        q.allocate("c6")


def test_ipam_requested_address(tmp_path):
    p = Pool(str(tmp_path / "p.json"), "10.6.0.0/24", "10.6.0.1", "10.6.0.128/25")
    assert p.allocate("a", "10.6.0.7") == "10.6.0.7"  # outside the range, inside the subnet
    with pytest.raises(AlreadyExists, match="Address already in use"):
        p.allocate("b", "10.6.0.7")
    with pytest.raises(InvalidArgument):
        p.allocate("b", "10.7.0.7")
    with pytest.raises(InvalidArgument):
        p.allocate("b", "10.6.0.1")
    # from the range, its own first address included (libnetwork, dockerd 20.10)
    assert p.allocate("b") == "10.6.0.128"
    assert p.allocate("c") == "10.6.0.129"
    p.release_owner("b")
    assert "10.6.0.128" not in p.allocated
    assert p.keep_only({"a"}) == ["10.6.0.129"]


def test_ipam_aux_addresses_and_ipv6(tmp_path):
    p = Pool(str(tmp_path / "a.json"), "10.6.0.0/24", "10.6.0.254", "10.6.0.64/26",
             reserved=["10.6.0.65"])
    assert [p.allocate(x) for x in "abc"] == ["10.6.0.64", "10.6.0.66", "10.6.0.67"]
    with pytest.raises(InvalidArgument):
        p.allocate("d", "10.6.0.254")
    p6 = Pool(str(tmp_path / "b.json"), "fd00:1::/64", "fd00:1::1", reserved=["fd00:1::2"])
    assert p6.allocate("a") == "fd00:1::3" and p6.allocate("b", "fd00:1::99") == "fd00:1::99"
    assert Pool(str(tmp_path / "b.json"), "fd00:1::/64", "fd00:1::1").allocate("c") == \
        "fd00:1::4"


def test_ipam_subnet_change_resets(tmp_path):
    path = str(tmp_path / "p.json")
    Pool(path, "10.8.0.0/24", "10.8.0.1").allocate("x")
    assert Pool(path, "10.9.0.0/24", "10.9.0.1").allocated == {}


def test_mac_from_address():
    assert mac_for("172.17.0.2") == "02:42:ac:11:00:02"


# --- /etc files --------------------------------------------------------------------------------

HOST_RESOLV = "# host\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.test\n" \
              "options edns0\n"


def test_resolv_filters_loopback():
    text, up = etcfiles.resolv(HOST_RESOLV)
    assert "127.0.0.53" not in text and "nameserver 10.0.0.2" in text
    assert "search corp.test" in text and up == []
    text, _ = etcfiles.resolv("nameserver 127.0.0.1\n")
    assert etcfiles.parse_resolv(text)[0] == ["8.8.8.8", "8.8.4.4"]


def test_resolv_options_replace():
    text, _ = etcfiles.resolv(HOST_RESOLV, dns=["1.1.1.1"], search=["a.test"],
                              options=["ndots:2"])
    assert text == "search a.test\nnameserver 1.1.1.1\noptions ndots:2\n"
    with pytest.raises(InvalidArgument):
        etcfiles.resolv("", dns=["not-an-ip"])


def test_resolv_embedded():
    text, up = etcfiles.resolv(HOST_RESOLV, embedded=True)
    assert text == "search corp.test\nnameserver 127.0.0.11\noptions edns0 ndots:0\n"
    assert up == ["127.0.0.53", "10.0.0.2"]  # loopback kept: forwarded from the host
    _, up = etcfiles.resolv(HOST_RESOLV, dns=["9.9.9.9"], embedded=True)
    assert up == ["9.9.9.9"]


def test_hosts_file():
    extra = etcfiles.parse_extra_hosts(["db:10.1.1.1", "gw=host-gateway", "v6:::1"],
                                       "172.17.0.1")
    assert extra == [("10.1.1.1", "db"), ("172.17.0.1", "gw"), ("::1", "v6")]
    text = etcfiles.hosts("h", "example.test", ["172.17.0.2"], extra)
    assert text.startswith(etcfiles.DEFAULT_HOSTS)
    assert text.endswith("172.17.0.2\th.example.test h\n")
    with pytest.raises(InvalidArgument):
        etcfiles.parse_extra_hosts(["nohost"])
    with pytest.raises(InvalidArgument):
        etcfiles.parse_extra_hosts(["a:999.1.1.1"])


def test_write_in_place_keeps_inode(tmp_path):
    path = tmp_path / "hosts"
    etcfiles.write(str(path), "a long first version\n")
    ino = path.stat().st_ino
    etcfiles.write(str(path), "short\n")
    assert path.stat().st_ino == ino and path.read_text() == "short\n"


# --- DNS messages ----------------------------------------------------------------------------------

def _query(name: str, qtype: int = dns.TYPE_A, qid: int = 0x1234) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns.encode_name(name) + \
        struct.pack("!HH", qtype, dns.CLASS_IN)


def test_dns_parse_and_answer():
    q = _query("web.example")
    name, qtype, qclass, end = dns.parse_question(q)
    assert (name, qtype, qclass, end) == ("web.example", 1, 1, len(q))
    r = dns.response(q, end, 0, [(dns.TYPE_A, socket.inet_aton("10.0.0.5"))])
    qid, flags, qd, an = struct.unpack_from("!HHHH", r)
    assert qid == 0x1234 and flags & 0x8000 and flags & 0x0100 and an == 1
    assert r.endswith(socket.inet_aton("10.0.0.5"))
    assert dns.parse_question(b"\0" * 5) is None
    assert dns.parse_question(r) is None  # a response is not a query
    assert dns.ptr_address("5.0.0.10.in-addr.arpa.") == "10.0.0.5"
    assert dns.ptr_address("example.com") is None


def test_dns_server_answers_and_forwards():
    """The server on a loopback socket: own names answered, others forwarded
    to a fake upstream on loopback, SERVFAIL without one."""
    import threading

    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.bind(("127.0.0.1", 0))

    def upstream():
        data, addr = up.recvfrom(512)
        _, _, _, end = dns.parse_question(data)
        up.sendto(dns.response(data, end, 0, [(dns.TYPE_A, socket.inet_aton("1.2.3.4"))]),
                  addr)

    table = {"web": ["10.0.0.5", "10.0.0.6"]}

    def resolve(key, name, qtype):
        if qtype == dns.TYPE_PTR:
            return ["web.net"] if name == "10.0.0.5" else None
        return table.get(name.lower())

    server = dns.DNSServer(resolve)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    addr = sock.getsockname()
    old_port = dns.PORT
    dns.PORT = up.getsockname()[1]
    try:
        server.serve("k", sock, ["127.0.0.1"])
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(3)
        c.sendto(_query("WEB"), addr)
        r = c.recv(512)
        assert struct.unpack_from("!H", r, 6)[0] == 2
        c.sendto(_query("web", dns.TYPE_AAAA), addr)
        r = c.recv(512)
        rcode, answers = struct.unpack_from("!H", r, 2)[0] & 0xF, struct.unpack_from("!H", r, 6)[0]
        assert (rcode, answers) == (0, 0)
        c.sendto(_query("5.0.0.10.in-addr.arpa", dns.TYPE_PTR), addr)
        assert b"\x03web\x03net\x00" in c.recv(512)
        t = threading.Thread(target=upstream)
        t.start()
        c.sendto(_query("elsewhere.test"), addr)
        assert c.recv(512).endswith(socket.inet_aton("1.2.3.4"))
        t.join()
        server.set_upstream("k", [])
        c.sendto(_query("nowhere.test"), addr)
        assert struct.unpack_from("!H", c.recv(512), 2)[0] & 0xF == dns.RCODE_SERVFAIL
    finally:
        dns.PORT = old_port
        server.close()
        up.close()


# --- ports ----------------------------------------------------------------------------------------

def test_port_requests():
    reqs = ports.requests({"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                            "53/udp": [{"HostPort": ""}],
                                            "81": [{"HostIp": "127.0.0.1",
                                                    "HostPort": "9000-9005"}]},
                           "PublishAllPorts": True},
                          {"80/tcp": {}, "443/tcp": {}})
    assert reqs == [ports.Request(53, "udp", "", 0, 0), ports.Request(80, "tcp", "", 8080, 8080),
                    ports.Request(81, "tcp", "127.0.0.1", 9000, 9005),
                    ports.Request(443, "tcp", "", 0, 0)]
    with pytest.raises(InvalidArgument):
        ports.requests({"PortBindings": {"80/tcp": [{"HostPort": "70000"}]}}, {})
    with pytest.raises(InvalidArgument):
        ports.requests({"PortBindings": {"x/tcp": [{}]}}, {})
    with pytest.raises(InvalidArgument):
        ports.requests({"PortBindings": {"80/tcp": [{"HostIp": "nope"}]}}, {})


def test_ports_shapes():
    maps = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80}]
    keys = ["80/tcp", "443/tcp"]
    assert ports.ports_map(maps, keys) == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None}
    assert ports.ports_list(maps, keys) == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 443, "Type": "tcp"}]


# --- networks ------------------------------------------------------------------------------------------

def test_network_create_requests():
    n = networks.parse_create({"Name": "app", "IPAM": {"Config": [
        {"Subnet": "10.20.0.0/16", "IPRange": "10.20.5.0/24", "Gateway": "10.20.0.254"}]},
        "Options": {networks.OPT_ICC: "false", networks.OPT_MTU: "1400"},
        "Labels": {"a": "b"}, "Internal": True}, nid="f" * 64, created="now")
    assert (n.subnet, n.gateway, n.ip_range, n.bridge) == ("10.20.0.0/16", "10.20.0.254",
                                                          "10.20.5.0/24", "br-ffffffffffff")
    assert not n.icc and n.mtu == 1400 and n.internal and n.user_subnet
    view = n.inspect({})
    assert view["IPAM"]["Config"] == [{"Subnet": "10.20.0.0/16", "Gateway": "10.20.0.254",
                                       "IPRange": "10.20.5.0/24"}]
    # names as dockerd takes them: anything but empty and the predefined ones
    assert networks.parse_create({"Name": "x y/z"}, nid="a" * 64, created="").name == "x y/z"
    for bad in ({"Name": ""}, {"Name": "bridge"},
                {"Name": "a", "IPAM": {"Config": [{"Subnet": "10.0.0.0/8",
                                                    "Gateway": "11.0.0.1"}]}},
                {"Name": "a", "IPAM": {"Config": [{"Subnet": "10.0.0.0/16",
                                                    "IPRange": "10.1.0.0/24"}]}},
                {"Name": "a", "Options": {networks.OPT_BRIDGE_NAME: "x" * 16}}):
        with pytest.raises(InvalidArgument):
            networks.parse_create(bad, nid="a" * 64, created="")
    with pytest.raises(NotFound, match='plugin "overlay" not found'):
        networks.parse_create({"Name": "o", "Driver": "overlay"}, nid="a" * 64, created="")


def test_pick_subnet_skips_taken():
    taken = [ipaddress.ip_network("172.17.0.0/16"), ipaddress.ip_network("172.18.5.0/24")]
    assert str(networks.pick_subnet(taken)) == "172.19.0.0/16"


def test_bridge_rules_layout():
    a = networks.Network(id="1", name="a", bridge="bra", subnet="10.1.0.0/24", icc=False)
    b = networks.Network(id="2", name="b", bridge="brb", subnet="10.2.0.0/24", internal=True)
    filt, nat = bridge_rules("PX", [a, b])
    fwd = filt["PX-FORWARD"]
    assert fwd[0] == ("-j", "PX-ISOLATION-1")
    assert ("-i", "bra", "-o", "bra", "-j", "DROP") in fwd
    assert ("-i", "brb", "!", "-o", "brb", "-j", "DROP") in fwd
    assert filt["PX-ISOLATION-2"] == [("-o", "bra", "-j", "DROP"), ("-o", "brb", "-j", "DROP"),
                                      ("-j", "RETURN")]
    assert nat["PX-POSTROUTING"] == [("-s", "10.1.0.0/24", "!", "-o", "bra", "-j",
                                      "MASQUERADE")]


def test_config_checks():
    assert check_config({})["bridge"] == "pallet0"
    for bad in ({"bridge": "x" * 16}, {"bip": "10.0.0.1"}, {"bip": "nope"},
                {"bip": "10.0.0.1/24", "fixed-cidr": "10.1.0.0/24"}, {"icc": "no"},
                {"chain-prefix": "BAD PREFIX"}, {"unknown": 1}):
        with pytest.raises(ConfigError):
            check_config(bad)


# --- pallet-proxy flags -------------------------------------------------------------------------------

def test_proxy_flags_as_docker_proxy():
    a = proxy.parse(["-proto", "udp", "-host-ip", "0.0.0.0", "--host-port=53",
                     "-container-ip", "172.17.0.2", "-container-port", "5353"])
    assert a == {"proto": "udp", "host_ip": "0.0.0.0", "host_port": 53,
                 "container_ip": "172.17.0.2", "container_port": 5353, "listen_fd": False}
    assert proxy.parse(["-container-ip", "1.2.3.4", "-container-port", "1",
                        "-use-listen-fd"])["listen_fd"] is True
    for bad in (["-proto", "sctp"], ["-bogus", "1"], ["-container-ip"],
                ["-host-ip", "0.0.0.0", "-host-port", "x"]):
        with pytest.raises(proxy.UsageError):
            proxy.parse(bad)
