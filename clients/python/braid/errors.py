"""Exceptions of the braid client: one class per status code of the wire contract.

Every failed call raises a subclass of :class:`BraidError` carrying the gRPC-style
code and the server's message, whether the failure came from a reply's Status,
from a stream's final event with an error status, or from the client itself
(a transport timeout is DEADLINE_EXCEEDED, a closed client UNAVAILABLE, a value
that the wire format cannot carry INVALID_ARGUMENT). Catch ``BraidError`` for
all of them or a subclass for one kind.
"""

from __future__ import annotations

from typing import Dict, Type

from . import braid_pb2 as pb

__all__ = [
    "BraidError",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
    "error_for",
]


class BraidError(Exception):
    """Base of every braid error.

    Attributes:
        code: the numeric status code (``braid_pb2.Code``; gRPC numbering).
        code_name: its name, e.g. ``"NOT_FOUND"``.
        message: the human-readable detail from the server (or the client).
    """

    #: The status code this class stands for; the base class uses UNKNOWN.
    CODE: int = pb.UNKNOWN

    def __init__(self, message: str = "", code: int | None = None) -> None:
        self.code: int = self.CODE if code is None else int(code)
        self.message: str = message
        super().__init__(message)

    @property
    def code_name(self) -> str:
        """The code's name as the contract spells it (``"UNKNOWN"`` when not in it)."""
        try:
            return pb.Code.Name(self.code)
        except ValueError:
            return "UNKNOWN"

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}" if self.message else self.code_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code_name}, message={self.message!r})"


class Cancelled(BraidError):
    """CANCELLED: the call was cancelled by the client or by shutdown."""

    CODE = pb.CANCELLED


class Unknown(BraidError):
    """UNKNOWN: an error that fits no other code."""

    CODE = pb.UNKNOWN


class InvalidArgument(BraidError, ValueError):
    """INVALID_ARGUMENT: the request is malformed or a parameter is out of range."""

    CODE = pb.INVALID_ARGUMENT


class DeadlineExceeded(BraidError, TimeoutError):
    """DEADLINE_EXCEEDED: the deadline passed before the call completed (or no reply came in time)."""

    CODE = pb.DEADLINE_EXCEEDED


class NotFound(BraidError, LookupError):
    """NOT_FOUND: a named chunk, stream or method does not exist."""

    CODE = pb.NOT_FOUND


class AlreadyExists(BraidError):
    """ALREADY_EXISTS: the object to create exists already."""

    CODE = pb.ALREADY_EXISTS


class PermissionDenied(BraidError):
    """PERMISSION_DENIED: the caller may not do this."""

    CODE = pb.PERMISSION_DENIED


class ResourceExhausted(BraidError):
    """RESOURCE_EXHAUSTED: a limit was hit (message size, streams, queue, KV pool)."""

    CODE = pb.RESOURCE_EXHAUSTED


class FailedPrecondition(BraidError):
    """FAILED_PRECONDITION: the system is not in a state to do this."""

    CODE = pb.FAILED_PRECONDITION


class Aborted(BraidError):
    """ABORTED: the operation was aborted, typically by a conflict."""

    CODE = pb.ABORTED


class OutOfRange(BraidError):
    """OUT_OF_RANGE: a value is past a valid range (e.g. beyond the context length)."""

    CODE = pb.OUT_OF_RANGE


class Unimplemented(BraidError, NotImplementedError):
    """UNIMPLEMENTED: the method or feature is not implemented by this server."""

    CODE = pb.UNIMPLEMENTED


class Internal(BraidError):
    """INTERNAL: an invariant broke inside the server (a bug or a GPU error)."""

    CODE = pb.INTERNAL


class Unavailable(BraidError, ConnectionError):
    """UNAVAILABLE: the service cannot serve now, or the client is closed."""

    CODE = pb.UNAVAILABLE


class DataLoss(BraidError):
    """DATA_LOSS: unrecoverable data loss (e.g. a gap in a stream's sequence numbers)."""

    CODE = pb.DATA_LOSS


class Unauthenticated(BraidError):
    """UNAUTHENTICATED: the caller has no valid credentials."""

    CODE = pb.UNAUTHENTICATED


_BY_CODE: Dict[int, Type[BraidError]] = {
    cls.CODE: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_for(code: int, message: str = "") -> BraidError:
    """Returns the exception for a non-OK status code.

    Codes the contract does not know (a newer server) give a plain
    :class:`BraidError` that keeps the numeric code.
    """
    cls = _BY_CODE.get(int(code))
    if cls is None:
        return BraidError(message, code=int(code))
    return cls(message)
