"""docker-compose 1.29.2 in a venv of its own (build/compose-venv).

It cannot join the project's test extra: it needs ``docker<7`` (the tests
use docker-py 7) and ``PyYAML<6``, whose sdist does not build on Python 3.11
with Cython 3 ("'build_ext' object has no attribute 'cython_sources'"), and
docker-py 6 needs ``requests<2.32``.  So
PyYAML 5.4.1 is built first with Cython<3 and no build isolation, then
compose; the venv is kept under build/ and reused.
"""
from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(REPO, "build", "compose-venv")
COMPOSE = os.path.join(VENV, "bin", "docker-compose")
STEPS = [
    ["install", "-q", "cython<3", "wheel", "setuptools<70"],
    ["install", "-q", "--no-build-isolation", "pyyaml==5.4.1"],
    # docker-py 6 speaks http+docker through requests, which 2.32 broke
    ["install", "-q", "docker-compose==1.29.2", "docker<7", "requests<2.32"],
]
MARK = os.path.join(VENV, ".pallet-compose-ok-2")


def ensure_compose() -> tuple[str | None, str]:
    """(path of docker-compose, '') or (None, why it could not be installed)."""
    if os.path.exists(COMPOSE) and os.path.exists(MARK):
        r = subprocess.run([COMPOSE, "version", "--short"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.startswith("1.29."):
            return COMPOSE, ""
    r = subprocess.run([sys.executable, "-m", "venv", VENV], capture_output=True, text=True)
    if r.returncode != 0:
        return None, "venv: " + r.stderr[-500:]
    pip = os.path.join(VENV, "bin", "pip")
    for step in STEPS:
        r = subprocess.run([pip, *step], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            return None, "pip %s: %s" % (" ".join(step), r.stderr[-800:])
    with open(MARK, "w") as f:
        f.write("ok\n")
    return COMPOSE, ""
