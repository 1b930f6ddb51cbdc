"""braid: the Python client of Braidinfer (braidd).

    import braid
    with braid.Client("tcp://127.0.0.1:7411") as c:
        doc = c.register_chunk("Paris is the capital of France.", role="context")
        for ev in c.generate([braid.Chunk(doc.id), "What is the capital of France?"], max_tokens=16):
            if isinstance(ev, braid.TokenEvent):
                print(ev.text, end="", flush=True)

Client is blocking and thread-safe; AsyncClient is its asyncio twin. Errors are
BraidError subclasses, one per status code of proto/braid.proto.
"""

from .aio import AsyncClient, AsyncStream
from .client import Client, Stream
from .errors import (
    Aborted,
    AlreadyExists,
    BraidError,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    error_for,
)
from ._wire import GenerateOptions
from .types import (
    Chunk,
    ChunkInfo,
    Completion,
    Event,
    FinalEvent,
    Health,
    ModelInfo,
    Part,
    Stats,
    Text,
    TokenEvent,
    TokenLogprob,
    Tokens,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient", "AsyncStream", "Client", "Stream", "GenerateOptions",
    "Chunk", "Text", "Tokens", "Part", "ChunkInfo", "TokenEvent", "TokenLogprob", "FinalEvent",
    "Event", "Usage", "Completion", "Stats", "ModelInfo", "Health",
    "BraidError", "Cancelled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    "error_for",
]
