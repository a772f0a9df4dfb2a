"""What every gRPC translator shares: the namespace of a call and the one
function that turns an engine error into a gRPC status."""
from __future__ import annotations

import functools
import logging

import grpc

from pallet.core import errors

log = logging.getLogger("pallet.containerd.rpc")

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"


def header(context, name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value
    return ""


def namespace_of(context) -> str:
    """The containerd namespace of the call; containerd refuses calls without one."""
    ns = header(context, NAMESPACE_HEADER)
    if not ns:
        raise errors.FailedPrecondition("namespace is required: failed precondition")
    return ns


def lease_of(context) -> str:
    """The lease the call is made under (``containerd-lease``), or ""."""
    return header(context, LEASE_HEADER)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status for an exception (the single mapping of this frontend)."""
    if isinstance(exc, errors.PalletError):
        code = getattr(grpc.StatusCode, exc.grpc_code, grpc.StatusCode.UNKNOWN)
        return code, exc.message
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc) or "not implemented"
    log.exception("unexpected error")
    return grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}"


def _abort(context, exc: BaseException):
    code, message = status_of(exc)
    context.abort(code, message)


def unary(fn):
    """Wrap a unary (or client-streaming) servicer method with the error mapping."""
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except grpc.RpcError:
            raise  # context.abort already called
        except Exception as exc:  # every failure becomes a status, never a traceback
            _abort(context, exc)
    return wrapper


def stream(fn):
    """Wrap a server-streaming servicer method (a generator) with the error mapping."""
    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            yield from fn(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:
            _abort(context, exc)
    return wrapper
