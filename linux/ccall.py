"""The C library's functions, called through ``_ctypes`` alone.

``import ctypes`` costs about 3.5 ms here, and half of it is ctypes' own
Python layer (every ``c_`` type and its byte-swapped twin, ``struct``, the
function-type caches), not the C extension it is built on.  pallet-runc,
the container process, the shim and the init pay it before their first
system call: a tenth of the time runc takes to run a whole container.
What pallet calls needs a handful of C types and one kind of function
pointer, defined here on ``_ctypes`` exactly as ctypes defines them (the
same type codes, the same flags), so that these types, the functions'
conventions and ``get_errno`` are ctypes' own: a value made here can be
handed to ctypes and back.

``libc.<name>`` is the C library's function ``name``: cdecl, returning a
C ``int`` unless told otherwise (``restype``), arguments converted as
ctypes converts them (Python ints to C ints, bytes and None to ``char *``),
errno kept for :func:`get_errno` (ctypes' ``use_errno``).
"""
from __future__ import annotations

import _ctypes

Structure = _ctypes.Structure
Array = _ctypes.Array
addressof = _ctypes.addressof
byref = _ctypes.byref
sizeof = _ctypes.sizeof
get_errno = _ctypes.get_errno


def _simple(name: str, code: str) -> type:
    """A C scalar type: ctypes' own definition (a ``_SimpleCData`` with the
    ``struct`` code of the C type)."""
    return type(name, (_ctypes._SimpleCData,), {"_type_": code, "__module__": __name__})


c_int = _simple("c_int", "i")
c_uint = _simple("c_uint", "I")
c_long = _simple("c_long", "l")
c_ulong = _simple("c_ulong", "L")
c_ushort = _simple("c_ushort", "H")
c_char = _simple("c_char", "c")
c_char_p = _simple("c_char_p", "z")
c_void_p = _simple("c_void_p", "P")

# the LP64 sizes of every platform pallet runs on (Linux, 64-bit)
c_uint32 = c_uint
c_uint64 = c_ulong
c_size_t = c_ulong


def create_string_buffer(init: bytes | int, size: int | None = None):
    """A mutable ``char`` array: ``init``'s bytes (and a NUL when there is
    room), or ``init`` zero bytes; as ctypes' function of the same name."""
    if isinstance(init, int):
        return (c_char * init)()
    buf = (c_char * (len(init) + 1 if size is None else size))()
    buf.value = init
    return buf


class _Function(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _PythonFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO | _ctypes.FUNCFLAG_PYTHONAPI
    _restype_ = c_int


class Library:
    """The functions of a loaded shared object (``None``: the program and
    the libraries it has loaded, the C library among them), each looked up
    once."""

    def __init__(self, name: str | None = None):
        self._handle = _ctypes.dlopen(name, _ctypes.RTLD_LOCAL)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        fn = _Function((name, self))
        setattr(self, name, fn)
        return fn


#: the C library
libc = Library()


def function(name: str, restype=c_int, argtypes=None, *, keep_gil: bool = False):
    """The C library's function ``name`` as an object of its caller's own
    (``libc.<name>`` is shared: its ``restype``/``argtypes`` are everyone's).
    ``keep_gil``: called with the GIL held (ctypes' PyDLL), as fork(2) must
    be for its child to hold it as after os.fork."""
    fn = (_PythonFunction if keep_gil else _Function)((name, libc))
    fn.restype = restype
    if argtypes is not None:
        fn.argtypes = argtypes
    return fn
