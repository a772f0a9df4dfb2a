"""Fixtures of the registry tests: a private image store, and Debian's
docker-registry on 127.0.0.1 (plain, htpasswd, token auth), each on its own
port and directory, stopped by pid after the test."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from registry_helpers import USERS, RegistryServer, TokenServer, make_store


@pytest.fixture
def base():
    path = tempfile.mkdtemp(prefix="pl-rg-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(base):
    s = make_store(os.path.join(base, "containerd"))
    yield s
    s.close()


def _registry(base, **kw):
    d = tempfile.mkdtemp(prefix="reg-", dir=base)
    return RegistryServer(d, **kw)


@pytest.fixture
def registry(base):
    reg = _registry(base).start()
    yield reg
    reg.stop()


@pytest.fixture
def basic_registry(base):
    reg = _registry(base, auth="htpasswd", users=USERS).start()
    yield reg
    reg.stop()


@pytest.fixture
def token_server(base):
    ts = TokenServer(tempfile.mkdtemp(prefix="tok-", dir=base), USERS).start()
    yield ts
    ts.stop()


@pytest.fixture
def token_registry(base, token_server):
    reg = _registry(base, auth="token", token_server=token_server).start()
    yield reg
    reg.stop()
