"""Legacy links (``--link NAME:ALIAS``) through the docker CLI: /etc/hosts and
the environment on the default bridge, the alias in the embedded DNS on a
user-defined network, docker's errors, ``ps`` names and ``rm --link``."""
from __future__ import annotations

import json

import pytest

from net_helpers import free_subnets

pytestmark = pytest.mark.root

HTTPD = ("busybox", "httpd", "-f", "-p", "80", "-h", "/etc")


def _fetch(seconds: int, url: str) -> tuple:
    return ("sh", "-c", f"timeout {seconds} wget -q -O - {url}; exit $?")


def test_link_on_the_default_bridge(engine):
    web, client = f"web{engine.sfx}", f"cl{engine.sfx}"
    wid = engine.out("run", "-d", "--name", web, "--hostname", "webhost", "-e", "SECRET=s3",
                     "--expose", "80", "--expose", "8080/udp", *HTTPD)
    ip = engine.inspect(wid)["NetworkSettings"]["IPAddress"]
    engine.out("create", "--name", client, "--link", f"{web}:db", "busybox", "sh", "-c",
               "cat /etc/hosts; echo ==; env; echo ==; "
               "timeout 5 wget -q -O - http://db/hostname; exit 0")
    info = engine.inspect(client)
    assert info["HostConfig"]["Links"] == [f"/{web}:/{client}/db"]
    out = engine.out("start", "-a", client)
    hosts, env, fetched = out.split("==\n")
    # dockerd's line: the alias, the linked container's hostname and its name
    assert f"{ip}\tdb webhost {web}\n" in hosts
    assert hosts.rstrip().splitlines()[-1].endswith(f"\t{info['Config']['Hostname']}")
    env = env.splitlines()
    for line in (f"DB_NAME=/{client}/db", f"DB_PORT=tcp://{ip}:80",
                 f"DB_PORT_80_TCP=tcp://{ip}:80", f"DB_PORT_80_TCP_ADDR={ip}",
                 "DB_PORT_80_TCP_PORT=80", "DB_PORT_80_TCP_PROTO=tcp",
                 f"DB_PORT_8080_UDP=udp://{ip}:8080", "DB_ENV_SECRET=s3"):
        assert line in env, (line, env)
    assert not any(v.startswith("DB_ENV_PATH=") for v in env)
    assert fetched.strip() == "webhost"  # the alias reaches it
    # docker ps shows the link name of the linked container (in full with --no-trunc)
    names = engine.out("ps", "--no-trunc", "--filter", f"id={wid}", "--format", "{{.Names}}")
    assert sorted(names.split(",")) == sorted([web, f"{client}/db"])
    assert engine.out("ps", "--filter", f"id={wid}", "--format", "{{.Names}}") == web
    # rm --link drops it; the default name cannot be removed that way
    engine.out("rm", "--link", f"/{client}/db")
    assert engine.inspect(client)["HostConfig"]["Links"] is None
    r = engine.docker("rm", "--link", web, check=False)
    assert r.returncode != 0 and "cannot remove the default link name" in r.stderr.decode()
    engine.docker("rm", "-f", wid, client)


def test_link_errors_as_docker_gives_them(engine):
    r = engine.docker("run", "--rm", "--link", f"pa-none{engine.sfx}:x", "busybox", "true",
                      check=False)
    # a 400, not a 404 (which would send the CLI off to pull the image)
    assert r.returncode == 125
    assert f"could not get container for pa-none{engine.sfx}" in r.stderr.decode()
    assert "Unable to find image" not in r.stderr.decode()
    stopped = engine.out("create", "--name", f"st{engine.sfx}", "busybox", "true")
    r = engine.docker("run", "--rm", "--network", "host", "--link", f"st{engine.sfx}",
                      "busybox", "true", check=False)
    assert r.returncode == 125 and "conflicting options: host type networking" in \
        r.stderr.decode()
    cid = engine.out("create", "--link", f"st{engine.sfx}:alias", "busybox", "true")
    r = engine.docker("start", cid, check=False)
    assert r.returncode != 0
    assert (f"Cannot link to a non running container: /st{engine.sfx} AS "
            in r.stderr.decode()), r.stderr
    # the failed start left no sandbox behind, and the container starts once its link runs
    engine.docker("rm", cid, stopped)


def test_link_alias_on_a_user_defined_network(engine):
    net = f"pl{engine.sfx}"
    (subnet,) = free_subnets(1)
    engine.networks_made.append(net)
    engine.out("network", "create", "--subnet", str(subnet), net)
    web = engine.out("run", "-d", "--name", f"lw{engine.sfx}", "--network", net, *HTTPD)
    ip = engine.inspect(web)["NetworkSettings"]["Networks"][net]["IPAddress"]
    r = engine.docker("run", "--rm", "--network", net, "--link", f"lw{engine.sfx}:private",
                      "busybox", "nslookup", "private", "127.0.0.11", check=False)
    assert ip in r.stdout.decode(), r.stdout + r.stderr
    # the alias belongs to the linking container only
    r = engine.docker("run", "--rm", "--network", net, "busybox", "nslookup", "private",
                      "127.0.0.11", check=False)
    assert ip not in r.stdout.decode()
    info = json.loads(engine.out("network", "inspect", net))[0]
    assert web in info["Containers"]
    engine.docker("rm", "-f", web)
