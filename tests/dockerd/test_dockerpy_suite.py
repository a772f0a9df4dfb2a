"""docker-py's own integration tests (from the docker 7.0.0 sdist on PyPI,
the last that ships them) run against palletd and against Debian's dockerd
20.10: every test of the chosen files that passes on dockerd must pass on
palletd.  Like tests/compose, the suite gets a venv of its own under build/
(docker 7.0.0, pytest, and paramiko, which its helpers import), made once
with pip; without PyPI the test skips.  ``alpine:3.10``, the suite's image,
is busybox tagged so."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

if sys.version_info >= (3, 11, 4):
    import tarfile
else:  # extraction filters: see pallet.client.cmd_cp
    from backports import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSION = "7.0.0"
SUITE = os.path.join(REPO, "build", f"docker-py-{VERSION}")
VENV = os.path.join(REPO, "build", "dockerpy-venv")
PYTHON = os.path.join(VENV, "bin", "python")
FILES = ["tests/integration/api_healthcheck_test.py", "tests/integration/api_network_test.py",
         "tests/integration/api_exec_test.py", "tests/integration/errors_test.py"]
#: the tests that make a swarm first (``init_swarm``): pallet takes part in none
SWARM_ONLY = "not attachable and not ingress and not with_scope"


def _venv() -> bool:
    mark = os.path.join(VENV, ".pallet-ok-2")
    if os.path.exists(mark):
        return True
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    # docker 7.0 speaks http+docker through requests, which 2.32 broke
    r = subprocess.run([PYTHON, "-m", "pip", "install", "-q", f"docker=={VERSION}", "pytest",
                        "paramiko", "requests<2.32"], capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        return False
    open(mark, "w").close()
    return True


def _suite() -> str | None:
    if not _venv():
        return None
    if os.path.isdir(os.path.join(SUITE, "tests", "integration")):
        return SUITE
    dest = os.path.join(REPO, "build")
    os.makedirs(dest, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:",
                        "--no-deps", f"docker=={VERSION}", "-d", dest],
                       capture_output=True, text=True, timeout=300)
    archive = os.path.join(dest, f"docker-{VERSION}.tar.gz")
    if r.returncode != 0 or not os.path.exists(archive):
        return None
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if "/tests/" in m.name]
        tf.extractall(dest, members=members, filter="data")
    os.replace(os.path.join(dest, f"docker-{VERSION}"), SUITE)
    return SUITE


def _run(engine, suite: str, tmp_path, name: str) -> dict[str, str]:
    engine.docker("tag", "busybox", "alpine:3.10")
    report = tmp_path / f"{name}.xml"
    env = dict(os.environ, DOCKER_HOST=f"unix://{engine.sock}", DOCKER_TEST_API_VERSION="1.41")
    subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "--rootdir", suite, "-o", "addopts=", f"--junitxml={report}", "-k", SWARM_ONLY,
                    *FILES], cwd=suite, env=env,
                   capture_output=True, timeout=900)
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        key = f"{case.get('classname')}.{case.get('name')}"
        kinds = {child.tag for child in case}
        outcomes[key] = "failed" if kinds & {"failure", "error"} else \
            "skipped" if "skipped" in kinds else "passed"
    return outcomes


def test_dockerpy_integration_subset(palletd, dockerd, tmp_path):
    suite = _suite()
    if suite is None:
        pytest.skip(f"docker {VERSION} sdist not available from PyPI")
    theirs = _run(dockerd, suite, tmp_path, "dockerd")
    ours = _run(palletd, suite, tmp_path, "palletd")
    passed_there = {k for k, v in theirs.items() if v == "passed"}
    assert passed_there, theirs
    missing = sorted(k for k in passed_there if ours.get(k) != "passed")
    assert missing == [], missing
