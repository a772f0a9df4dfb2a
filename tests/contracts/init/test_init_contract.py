"""The ``init`` role's contract (``pallet.core.contracts.Init``) against every
installed init (init_tini, init_exec), each under every installed runtime:
PID 1 is the init, which runs the command as its child, forwards signals,
reaps orphans and exits with the command's status -- or the runtime refuses
the spec with an error naming the fix.  ``--init`` never silently does nothing."""
from __future__ import annotations

import copy
import os
import signal

import pytest

from contract_helpers import bundle_spec, kernel_for, read_to_eof, wait_exit
from pallet.core import contracts, errors

pytestmark = pytest.mark.root

#: per init: a configuration under which it cannot work (prepare_spec must say so)
BROKEN = {"init_exec": {"binary": "/no/such/init"}, "init_tini": {"init_path": "/no/such/init"}}


def _started(setup, args):
    """(id, pid, output fd) of a started container under the init, or None
    when the runtime refused it, after checking that the refusal is clear."""
    try:
        cid, pid, r = setup.create(args)
    except errors.PalletError as e:
        assert isinstance(e, errors.InvalidArgument), e
        assert "init" in e.message and "[roles] init" in e.message, e.message
        assert setup.runtime.list() == []
        return None
    setup.runtime.start(cid)
    return cid, pid, r


def _finish(setup, cid: str, pid: int, r: int) -> tuple[int, bytes]:
    code = wait_exit(pid)
    out = read_to_eof(r)
    os.close(r)
    setup.runtime.delete(cid)
    return code, out


def _run(setup, args):
    """(exit code, output) of ``args`` run under the init; None if refused."""
    started = _started(setup, args)
    return None if started is None else _finish(setup, *started)


def test_fills_the_contract(init):
    assert isinstance(init, contracts.Init)
    assert isinstance(init.name, str) and init.name


def test_prepare_spec_twice_changes_nothing(init):
    spec = bundle_spec("/rootfs", ["sh", "-c", "true"])
    init.prepare_spec(spec)
    once = copy.deepcopy(spec)
    init.prepare_spec(spec)
    assert spec == once


def test_run_is_an_init_or_not_implemented(init):
    """``run`` becomes the init of argv in this process (exit status passed
    on), or says NotImplementedYet for an init that only runs as a binary."""
    child = os.fork()
    if child == 0:
        code = 223
        try:
            init.run(["sh", "-c", "exit 5"], {"PATH": "/bin:/usr/bin"})
        except errors.NotImplementedYet:
            code = 222
        finally:
            os._exit(code)
    assert wait_exit(child) in (5, 222)


def test_a_configuration_it_cannot_use_is_a_config_error(init, tmp_path):
    broken = BROKEN.get(init.name)
    if broken is None:
        pytest.skip(f"no broken configuration known for {init.name}")
    from pallet.core.paths import Paths

    kernel = kernel_for("init", init.name, Paths(str(tmp_path / "d"), str(tmp_path / "e")),
                        broken)
    with pytest.raises(errors.ConfigError, match="/no/such/init"):
        kernel.provide("init").prepare_spec(bundle_spec("/rootfs", ["true"]))


def test_pid_1_is_the_init_and_the_status_is_the_commands(setup):
    outcome = _run(setup, ["sh", "-c", "echo $$; exit 3"])
    if outcome is None:
        return
    code, out = outcome
    assert code == 3
    assert out.strip() != b"1", "the command is PID 1: it runs without the init"


def test_signals_are_forwarded_to_the_command(setup):
    # sleep has no handler: as PID 1 it would ignore SIGTERM (pid_namespaces(7))
    started = _started(setup, ["sh", "-c", "echo up; exec sleep 1000"])
    if started is None:
        return
    cid, pid, r = started
    assert os.read(r, 100) == b"up\n"
    setup.runtime.kill(cid, signal.SIGTERM)
    code, _out = _finish(setup, cid, pid, r)
    assert code == 128 + signal.SIGTERM


def test_orphans_are_reaped(setup):
    outcome = _run(setup, ["sh", "-c", "(sleep 0.1 &); sleep 0.8; cat /proc/[0-9]*/stat"])
    if outcome is None:
        return
    code, out = outcome
    assert code == 0
    states = [line.rpartition(b")")[2].split()[0] for line in out.splitlines() if b")" in line]
    assert states and b"Z" not in states, out
