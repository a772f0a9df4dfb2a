"""The pallet CLI's flags for what palletd now does: health checks, MAC and
IPv6 addresses, log drivers (``pallet run`` builds the same request the
docker CLI sends)."""
from __future__ import annotations

import json
import subprocess
import sys

from ctr_helpers import wait_for


def pallet(engine, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "pallet.client.docker", *args], capture_output=True,
                       text=True, timeout=60, env=dict(engine.env, PALLET_HOST=f"unix://{engine.sock}"))
    assert not check or r.returncode == 0, r.stderr
    return r


def test_health_mac_log_flags(palletd):
    cid = pallet(palletd, "run", "-d", "--health-cmd", "true", "--health-interval", "500ms",
                 "--health-retries", "2", "--health-start-period", "1m30s",
                 "--mac-address", "02:42:ac:11:00:77", "--log-driver", "local", "--log-opt",
                 "max-size=1m", "busybox", "sleep", "300").stdout.strip()
    c = json.loads(palletd.docker("inspect", cid).stdout)[0]
    assert c["Config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 500_000_000,
                                          "Timeout": 0, "StartPeriod": 90_000_000_000,
                                          "Retries": 2}
    assert c["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {"max-size": "1m"}}
    assert c["NetworkSettings"]["Networks"]["bridge"]["MacAddress"] == "02:42:ac:11:00:77"
    wait_for(lambda: "(healthy)" in pallet(palletd, "ps", "--filter", "health=healthy").stdout,
             30)
    r = pallet(palletd, "run", "--no-healthcheck", "--health-cmd", "x", "busybox", "true",
               check=False)
    assert r.returncode != 0 and "--no-healthcheck conflicts with --health-* options" in r.stderr
    r = pallet(palletd, "run", "--health-interval", "soon", "busybox", "true", check=False)
    assert r.returncode == 125 and 'time: invalid duration "soon"' in r.stderr
    palletd.docker("rm", "-f", cid)
