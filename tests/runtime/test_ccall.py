"""pallet.linux.ccall against ctypes itself: the same C types, the same calls,
the same errno; values made by one are taken by the other."""
from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys

import pytest

from pallet.linux import ccall

TYPES = ["c_int", "c_uint", "c_long", "c_ulong", "c_ushort", "c_char", "c_char_p", "c_void_p",
         "c_uint32", "c_uint64", "c_size_t"]


@pytest.mark.parametrize("name", TYPES)
def test_types_are_ctypes_own(name):
    ours, theirs = getattr(ccall, name), getattr(ctypes, name)
    assert ours._type_ == theirs._type_
    assert ccall.sizeof(ours) == ctypes.sizeof(theirs)
    assert ctypes.alignment(ours) == ctypes.alignment(theirs)


def test_integer_conversions_match_ctypes():
    for value in (0, 1, -1, 2**31, 2**32 + 5, 2**63, 2**64 - 1):
        for name in ("c_int", "c_uint", "c_long", "c_ulong", "c_ushort"):
            assert getattr(ccall, name)(value).value == getattr(ctypes, name)(value).value


def test_structure_layout_matches_ctypes():
    class Ours(ccall.Structure):
        _fields_ = [("len", ccall.c_ushort), ("ptr", ccall.c_void_p), ("n", ccall.c_uint32)]

    class Theirs(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("ptr", ctypes.c_void_p), ("n", ctypes.c_uint32)]

    assert ccall.sizeof(Ours) == ctypes.sizeof(Theirs)
    for field in ("len", "ptr", "n"):
        assert getattr(Ours, field).offset == getattr(Theirs, field).offset
    pair = (Ours * 2)()
    pair[1].n = 7
    assert bytes(pair)[ccall.sizeof(Ours) + Ours.n.offset] == 7


@pytest.mark.parametrize("args", [(b"abc",), (b"a\0b", 3), (b"xy", 8), (16,)])
def test_create_string_buffer_matches_ctypes(args):
    ours, theirs = ccall.create_string_buffer(*args), ctypes.create_string_buffer(*args)
    assert len(ours) == len(theirs)
    assert ours.raw == theirs.raw
    assert ours.value == theirs.value


def test_create_string_buffer_refuses_what_ctypes_refuses():
    with pytest.raises(ValueError):
        ctypes.create_string_buffer(b"toolong", 3)
    with pytest.raises(ValueError):
        ccall.create_string_buffer(b"toolong", 3)


def test_calls_return_and_keep_errno(tmp_path):
    assert ccall.libc.getpid() == os.getpid()
    missing = os.fsencode(tmp_path / "missing")
    assert ccall.libc.rmdir(missing) == -1
    assert ccall.get_errno() == errno.ENOENT
    # the errno is ctypes' own (one per thread, shared)
    assert ctypes.get_errno() == errno.ENOENT
    os.mkdir(tmp_path / "there")
    assert ccall.libc.rmdir(os.fsencode(tmp_path / "there")) == 0


def test_values_cross_between_ccall_and_ctypes():
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(32)
    # a ccall value into a ctypes function, a ctypes buffer into a ccall one
    assert libc.snprintf(buf, ccall.c_size_t(32), b"%lu", ccall.c_ulong(2**40)) == 13
    assert buf.value == b"1099511627776"
    ours = ccall.create_string_buffer(32)
    assert ccall.libc.snprintf(ours, ctypes.c_size_t(32), b"%d", ctypes.c_int(-5)) == 2
    assert ours.value == b"-5"


def test_function_is_the_callers_own():
    strlen = ccall.function("strlen", ccall.c_size_t, (ccall.c_char_p,))
    assert strlen(b"four") == 4
    with pytest.raises(ctypes.ArgumentError):
        strlen(4)
    # the shared one is untouched
    assert ccall.libc.strlen.argtypes is None
    assert ccall.function("getpid", keep_gil=True)() == os.getpid()


def test_library_attributes():
    with pytest.raises(AttributeError):
        ccall.libc.__deepcopy__
    with pytest.raises(AttributeError):
        ccall.libc.no_such_function_anywhere
    assert ccall.libc.getpid is ccall.libc.getpid


def test_ctypes_is_not_loaded_by_the_system_call_layer():
    """The point of the module: pallet.linux.syscalls and the runtime's
    bindings come without ctypes' Python layer."""
    code = ("import sys; import pallet.linux.syscalls, pallet.plugins.runtime_ns.linux, "
            "pallet.plugins.runtime_ns.process; print('ctypes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
