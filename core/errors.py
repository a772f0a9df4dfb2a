"""The engine's error classes.

Every layer raises these; each frontend maps them to its own protocol in one
function (docker's JSON error and status code, a gRPC status, runc's message
and exit code).  Messages are lower case, with no trailing period, and name
the thing that failed.
"""


class PalletError(Exception):
    """Base class of every error the engine reports to a caller."""

    #: HTTP status used by the Docker API frontend.
    http_status = 500
    #: gRPC status code name used by the containerd frontend.
    grpc_code = "UNKNOWN"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(PalletError):
    """The request itself is wrong (bad JSON, bad reference, bad flag)."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class NotFound(PalletError):
    """The named object (container, image, task, snapshot, blob) does not exist."""

    http_status = 404
    grpc_code = "NOT_FOUND"


class AlreadyExists(PalletError):
    """An object with that name or id exists already."""

    http_status = 409
    grpc_code = "ALREADY_EXISTS"


class Conflict(PalletError):
    """The object is in use or in a state that forbids the operation."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"


class FailedPrecondition(Conflict):
    """The object is not in the state the operation needs (not running, not created)."""


class NotModified(PalletError):
    """Nothing to do: already started, already stopped (docker answers 304)."""

    http_status = 304
    grpc_code = "FAILED_PRECONDITION"


class NotImplementedYet(PalletError):
    """A part of a protocol that pallet does not serve."""

    http_status = 501
    grpc_code = "UNIMPLEMENTED"


class Unavailable(PalletError):
    """A process of the chain cannot be reached right now."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class ConfigError(PalletError):
    """The configuration cannot be used; the daemon refuses to start."""


_BY_GRPC = {}


def from_grpc_code(code_name: str, message: str) -> PalletError:
    """Rebuild the error class that a gRPC status code stands for."""
    if not _BY_GRPC:
        for cls in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
                    NotImplementedYet, Unavailable):
            _BY_GRPC.setdefault(cls.grpc_code, cls)
    return _BY_GRPC.get(code_name, PalletError)(message)
