"""Plain Python values of the braid client: composition parts, stream events, and
the information the service returns (chunks, usage, stats, model, health).

These are what users build and receive; the conversion to and from the protobuf
messages of proto/braid.proto lives in braid._wire so that the sync and async
clients share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

__all__ = [
    "Chunk",
    "Text",
    "Tokens",
    "Part",
    "PartLike",
    "ChunkInfo",
    "TokenLogprob",
    "TokenEvent",
    "Usage",
    "FinalEvent",
    "Event",
    "Completion",
    "Stats",
    "ModelInfo",
    "Health",
]


# --- composition parts ---


@dataclass(frozen=True)
class Chunk:
    """A registered chunk in a composition, by its 64-hex-digit id.

    Its role is the one it was registered with; the request's namespace must be
    the chunk's.
    """

    id: str


@dataclass(frozen=True)
class Text:
    """Inline text framed by the model's chat template for ``role``.

    role: ``"system"``, ``"context"``, ``"user"`` (default) or ``"assistant"``.
    """

    text: str
    role: str = "user"


@dataclass(frozen=True)
class Tokens:
    """Inline token ids, used exactly as given (no chat-template framing)."""

    ids: Sequence[int]


Part = Union[Chunk, Text, Tokens]
#: What a composition may hold: parts, a plain string (a user turn) or a
#: ChunkInfo (the chunk it describes).
PartLike = Union[Chunk, Text, Tokens, str, "ChunkInfo"]


# --- chunks ---


@dataclass(frozen=True)
class ChunkInfo:
    """What the service knows about one chunk.

    ``existed`` is only meaningful in register_chunk's answer: True when the same
    content had been registered before (chunks are deduplicated by content).
    ``token_ids`` and ``text`` (the tokens decoded, chat framing included) are
    set only by get_chunk(include_tokens=True).
    """

    id: str
    namespace: str = ""
    role: str = "context"
    num_tokens: int = 0
    pinned: bool = False
    kv_resident: bool = False
    users: int = 0
    hits: int = 0
    tokens_saved: int = 0
    kv_bytes: int = 0
    existed: bool = False
    token_ids: Optional[List[int]] = None
    text: Optional[str] = None


# --- stream events ---


@dataclass(frozen=True)
class TokenLogprob:
    """A token with its log-probability (natural log)."""

    token_id: int
    logprob: float
    text: str = ""


@dataclass(frozen=True)
class TokenEvent:
    """One generated token.

    ``text`` is the text delta: complete UTF-8 characters only, so it may be
    empty while a multi-byte character is still incomplete. ``logprob`` and
    ``top_logprobs`` are set only when logprobs were asked for. ``seq`` is the
    event's sequence number in its stream (1, 2, 3, ...).
    """

    token_id: int
    text: str
    logprob: Optional[float] = None
    top_logprobs: List[TokenLogprob] = field(default_factory=list)
    seq: int = 0


@dataclass(frozen=True)
class Usage:
    """Token accounting of one generation."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_ms: float = 0.0
    total_time_ms: float = 0.0


@dataclass(frozen=True)
class FinalEvent:
    """The last event of a stream.

    finish_reason: ``"stop"``, ``"length"``, ``"cancelled"`` or ``"error"``.
    ``text`` is text held back until the end (a possible stop-string prefix):
    append it to the concatenated token texts. ``status_code`` and
    ``status_message`` carry the status (0 = OK). Iterators raise the matching
    BraidError instead of yielding a final event with finish_reason ``"error"``.
    """

    finish_reason: str
    usage: Usage
    output_chunk_id: Optional[str] = None
    text: str = ""
    client_request_id: str = ""
    status_code: int = 0
    status_message: str = ""
    seq: int = 0


Event = Union[TokenEvent, FinalEvent]


@dataclass(frozen=True)
class Completion:
    """A whole answer: what complete() returns.

    ``text`` is every token's text plus the final event's held-back text.
    """

    text: str
    token_ids: List[int]
    finish_reason: str
    usage: Usage
    output_chunk_id: Optional[str]
    stream_id: int
    logprobs: List[Optional[float]] = field(default_factory=list)
    client_request_id: str = ""


# --- service information ---


@dataclass(frozen=True)
class Stats:
    """Service counters (see StatsReply in proto/braid.proto for each field)."""

    kv_pages_total: int = 0
    kv_pages_free: int = 0
    kv_page_tokens: int = 0
    kv_page_bytes: int = 0
    chunks: int = 0
    running: int = 0
    queued: int = 0
    generations: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    steps: int = 0
    evictions: int = 0
    open_streams: int = 0
    calls_in_flight: int = 0
    uptime_ms: int = 0
    preemptions: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model (see ModelInfoReply in proto/braid.proto)."""

    name: str = ""
    architecture: str = ""
    num_layers: int = 0
    hidden_size: int = 0
    num_heads: int = 0
    num_kv_heads: int = 0
    head_dim: int = 0
    vocab_size: int = 0
    max_context: int = 0
    chat_format: str = ""
    fingerprint: str = ""
    backend: str = ""
    bos_token_id: int = -1
    eos_token_id: int = -1


@dataclass(frozen=True)
class Health:
    """Liveness and readiness. ``serving`` is True when the service takes requests."""

    serving: bool = False
    status: str = ""
    version: str = ""
    backend: str = ""
    model: str = ""
    uptime_ms: int = 0
