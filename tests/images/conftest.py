"""Fixtures of the image tests: palletd on its own roots (busybox loaded) and
Debian's docker-registry on 127.0.0.1 holding busybox (pushed with skopeo
from the built-in archive), each stopped by pid; everything is skipped
without root, the registry or skopeo."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from images_helpers import USERS, ImagePalletd, RegistryServer, skopeo_copy

REGISTRY_OK = bool(shutil.which("docker-registry") and shutil.which("skopeo")
                   and shutil.which("openssl"))


def _needs():
    if os.geteuid() != 0:
        pytest.skip("palletd needs root")
    if not REGISTRY_OK:
        pytest.skip("needs docker-registry, skopeo and openssl")


@pytest.fixture(scope="module")
def base():
    path = tempfile.mkdtemp(prefix="pl-im-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def registry(base, busybox_tar):
    """A plain registry with busybox as ``lib/busybox:latest``."""
    _needs()
    reg = RegistryServer(tempfile.mkdtemp(prefix="reg-", dir=base))
    try:
        reg.start()
        skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{reg.host}/lib/busybox:latest")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def auth_registry(base, busybox_tar):
    """An htpasswd registry (users of registry_helpers.USERS) with busybox as
    ``private/busybox:latest``."""
    _needs()
    reg = RegistryServer(tempfile.mkdtemp(prefix="areg-", dir=base), auth="htpasswd",
                         users=USERS)
    try:
        reg.start()
        user, pw = next(iter(USERS.items()))
        skopeo_copy(f"docker-archive:{busybox_tar}", f"docker://{reg.host}/private/busybox:latest",
                    f"--dest-creds={user}:{pw}")
        yield reg
    finally:
        reg.stop()


def _engine(busybox_tar, load: bool):
    _needs()
    d = ImagePalletd()
    try:
        d.start()
        if load:
            d.docker("load", "-i", busybox_tar)
    except BaseException:
        d.stop()
        raise
    return d


@pytest.fixture(scope="module")
def palletd(busybox_tar):
    """One palletd per test module, busybox loaded."""
    d = _engine(busybox_tar, True)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def fresh_palletd(busybox_tar):
    """A palletd of its own, with no image, for tests that kill it or count its blobs."""
    d = _engine(busybox_tar, False)
    try:
        yield d
    finally:
        d.stop()
