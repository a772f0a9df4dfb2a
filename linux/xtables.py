"""iptables through python-iptables (legacy xtables), as pallet's plugins use it.

Rules are written as short iptables argument tuples, e.g.
``("-o", "pallet0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
"-j", "ACCEPT")``, and turned into ``iptc.Rule`` objects here, so that the
callers read like the iptables-save output an operator sees.

Each owner keeps its rules in chains of its own and *syncs* them: every
chain it owns is flushed and refilled with the rules its state asks for, and
the jumps from the built-in chains are made to be exactly one, all in one
libiptc commit (one atomic table replace: no moment without the rules, and
nothing is ever duplicated however often it runs).  libiptc replaces whole
tables, so concurrent writers would lose each other's changes: every
read-modify-commit holds ``/run/xtables.lock``, the lock the iptables
commands take (xtables-legacy's ``-w``).

python-iptables is not thread-safe (it caches one handle per table): callers
run it on the plugin worker thread (``worker.py``).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sysconfig
import time

from pallet.core.errors import PalletError

XT_LOCK = "/run/xtables.lock"
LOCK_TIMEOUT = 10.0

_iptc = None


def iptc():
    """python-iptables, imported on first use (it is slow to import), with
    ``XTABLES_LIBDIR`` pointing at Debian's extension directory when unset
    (otherwise it runs ``ldconfig -v`` to find it)."""
    global _iptc
    if _iptc is None:
        if "XTABLES_LIBDIR" not in os.environ:
            multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
            for d in (f"/usr/lib/{multiarch}/xtables", "/usr/lib/xtables", "/usr/lib64/xtables"):
                if os.path.isdir(d):
                    os.environ["XTABLES_LIBDIR"] = d
                    break
        try:
            import iptc as module
        except Exception as e:  # noqa: BLE001 — a broken install is reported, not a traceback
            raise PalletError(f"load python-iptables: {e}") from None
        _iptc = module
    return _iptc


@contextlib.contextmanager
def locked():
    """Hold the xtables lock (as ``iptables -w`` does) for a read-modify-commit."""
    fd = os.open(XT_LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PalletError(f"iptables: another app is holding {XT_LOCK}") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


# --- rule descriptions -------------------------------------------------------------

_ADDR = {"-s": "src", "-d": "dst", "-i": "in_interface", "-o": "out_interface",
         "-p": "protocol"}


def build(spec: tuple, family: int = 4):
    """An ``iptc.Rule`` (``Rule6`` for ip6tables) from an iptables argument tuple."""
    mod = iptc()
    rule = mod.Rule6() if family == 6 else mod.Rule()
    args = list(spec)
    i, negate, current = 0, False, None
    while i < len(args):
        a = args[i]
        if a == "!":
            negate = True
            i += 1
            continue
        if a in _ADDR:
            setattr(rule, _ADDR[a], ("!" if negate else "") + args[i + 1])
            negate = False
            i += 2
        elif a == "-m":
            current = rule.create_match(args[i + 1])
            i += 2
        elif a == "-j":
            current = rule.create_target(args[i + 1])
            i += 2
        elif a.startswith("--"):
            if current is None:
                raise ValueError(f"iptables option {a} outside a match or target in {spec}")
            value = args[i + 1]
            setattr(current, a[2:].replace("-", "_"), ("!" if negate else "") + value)
            negate = False
            i += 2
        else:
            raise ValueError(f"cannot read iptables rule {spec}")
    return rule


def _key(rule) -> tuple:
    """What makes two rules the same, for the jumps in built-in chains."""
    return (rule.src, rule.dst, rule.in_interface, rule.out_interface, rule.protocol,
            tuple((m.name, tuple(sorted(m.get_all_parameters().items())))
                  for m in rule.matches),
            rule.target.name if rule.target else "")


def _table(name: str, family: int = 4):
    mod = iptc()
    table = mod.Table6(name) if family == 6 else mod.Table(name)
    table.autocommit = False
    table.refresh()
    return table


def _chain(table, name: str):
    mod = iptc()
    if not table.is_chain(name):
        table.create_chain(name)
    return mod.Chain(table, name)


def sync(table_name: str, chains: dict[str, list[tuple]], *,
         jumps: list[tuple[str, tuple]] = (), ensure: tuple[str, ...] = (),
         family: int = 4) -> None:
    """Make ``chains`` (name -> rules, in order) hold exactly those rules, each
    jump ``(built-in chain, rule)`` be present exactly once at the top of its
    chain, and the chains of ``ensure`` exist (their rules left alone) — in
    one commit (``family`` 6: the ip6tables table)."""
    mod = iptc()
    with locked():
        table = _table(table_name, family)
        try:
            for name in (*ensure, *chains):
                _chain(table, name)
            for name, rules in chains.items():
                chain = mod.Chain(table, name)
                chain.flush()
                for spec in rules:
                    chain.append_rule(build(spec, family))
            for builtin, spec in jumps:
                want = build(spec, family)
                chain = mod.Chain(table, builtin)
                target = want.target.name
                present = [r for r in chain.rules if r.target and r.target.name == target]
                if len(present) == 1 and _key(present[0]) == _key(want) \
                        and chain.rules[0].target.name == target:
                    continue
                for r in present:
                    chain.delete_rule(r)
                chain.insert_rule(want, 0)
            table.commit()
        except mod.IPTCError as e:
            table.refresh()  # drop what was not committed
            raise PalletError(f"iptables {table_name}: {e}") from None
        except (ValueError, mod.xtables.XTablesError) as e:
            table.refresh()
            raise PalletError(f"iptables {table_name}: {e}") from None


def remove_chains(table_name: str, names: list[str], family: int = 4) -> None:
    """Delete the chains ``names`` and every rule of the table that jumps to
    them (missing ones are fine)."""
    mod = iptc()
    with locked():
        table = _table(table_name, family)
        try:
            present = [n for n in names if table.is_chain(n)]
            if not present:
                return
            for chain in table.chains:
                if chain.name in present:
                    continue
                for r in list(chain.rules):
                    if r.target and r.target.name in present:
                        chain.delete_rule(r)
            for n in present:
                mod.Chain(table, n).flush()
            for n in present:
                table.delete_chain(n)
            table.commit()
        except mod.IPTCError as e:
            table.refresh()
            raise PalletError(f"iptables {table_name}: remove chains: {e}") from None


def chain_names(table_name: str, family: int = 4) -> list[str]:
    """The chains of a table (for checks and clean-up)."""
    with locked():
        table = _table(table_name, family)
        return [c.name for c in table.chains]


def set_sysctl(path: str, value: str) -> None:
    """Write one /proc/sys value (quietly when it is already right)."""
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise PalletError(f"write {path}: {(e.strerror or str(e)).lower()}") from None
