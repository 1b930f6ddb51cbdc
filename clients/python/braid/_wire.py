"""Conversion between the client's Python values and the protobuf messages of
proto/braid.proto, shared by the sync and the async client.

Nothing here does I/O: envelopes are encoded to bytes and decoded from bytes,
composition parts and generation options are validated and converted, and
StreamCursor turns StreamNext replies into events while keeping the stream's
acknowledged sequence number (deduplicating replayed events, refusing gaps).

Validation here covers what the wire format itself cannot carry (a negative
max_tokens, a seed past 2**64, a role the contract does not know, a string
where a number belongs): those raise InvalidArgument before anything is sent.
Range checks of representable values (a negative temperature, NaN, top_p
above 1) are the server's: it is the one place that knows the limits, and the
client reports its INVALID_ARGUMENT.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Type, TypedDict, TypeVar

from google.protobuf.message import DecodeError, Message

from . import braid_pb2 as pb
from .errors import BraidError, DataLoss, Internal, InvalidArgument, error_for
from .types import (
    Chunk,
    ChunkInfo,
    Completion,
    Event,
    FinalEvent,
    Health,
    ModelInfo,
    Stats,
    Text,
    TokenEvent,
    TokenLogprob,
    Tokens,
    Usage,
)

SERVICE = "braid.v1.Braid"

#: method name -> (request message class, reply message class)
METHODS: Dict[str, Tuple[Type[Message], Type[Message]]] = {
    "Health": (pb.HealthRequest, pb.HealthReply),
    "RegisterChunk": (pb.RegisterChunkRequest, pb.RegisterChunkReply),
    "GetChunk": (pb.GetChunkRequest, pb.GetChunkReply),
    "ListChunks": (pb.ListChunksRequest, pb.ListChunksReply),
    "DeleteChunk": (pb.DeleteChunkRequest, pb.DeleteChunkReply),
    "PinChunk": (pb.PinChunkRequest, pb.PinChunkReply),
    "Generate": (pb.GenerateRequest, pb.GenerateReply),
    "StreamNext": (pb.StreamNextRequest, pb.StreamNextReply),
    "Cancel": (pb.CancelRequest, pb.CancelReply),
    "Tokenize": (pb.TokenizeRequest, pb.TokenizeReply),
    "Stats": (pb.StatsRequest, pb.StatsReply),
    "ModelInfo": (pb.ModelInfoRequest, pb.ModelInfoReply),
}

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

_ROLES = {
    "system": pb.ROLE_SYSTEM,
    "context": pb.ROLE_CONTEXT,
    "user": pb.ROLE_USER,
    "assistant": pb.ROLE_ASSISTANT,
    "output": pb.ROLE_ASSISTANT,
}
_ROLE_NAMES = {
    pb.ROLE_UNSPECIFIED: "unspecified",
    pb.ROLE_SYSTEM: "system",
    pb.ROLE_CONTEXT: "context",
    pb.ROLE_USER: "user",
    pb.ROLE_ASSISTANT: "assistant",
}
_REUSE = {
    "exact": pb.REUSE_EXACT,
    "independent": pb.REUSE_INDEPENDENT,
    "repair": pb.REUSE_REPAIR,
}
_FINISH = {
    pb.FINISH_REASON_UNSPECIFIED: "unspecified",
    pb.FINISH_REASON_STOP: "stop",
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_CANCELLED: "cancelled",
    pb.FINISH_REASON_ERROR: "error",
}


# --- envelopes ---


def encode_call(method: str, request: Message, call_id: int, timeout_s: Optional[float]) -> bytes:
    """Serialises one RpcRequest envelope for ``method`` (a short name, e.g. "Health")."""
    env = pb.RpcRequest(method=f"{SERVICE}/{method}", call_id=call_id, payload=request.SerializeToString())
    if timeout_s is not None and timeout_s > 0:
        env.timeout_ms = max(1, int(math.ceil(timeout_s * 1000)))
    return env.SerializeToString()


M = TypeVar("M", bound=Message)


def decode_reply(data: bytes, call_id: int, reply_cls: Type[M]) -> M:
    """Parses an RpcReply envelope and returns its payload as ``reply_cls``.

    Raises the status's BraidError when the status is not OK, and Internal when
    the bytes are not a reply to this call.
    """
    env = pb.RpcReply()
    try:
        env.ParseFromString(data)
    except DecodeError as e:
        raise Internal(f"undecodable reply ({len(data)} bytes): {e}") from None
    if env.call_id != call_id and env.status.code == pb.OK:
        raise Internal(f"reply for call {env.call_id} received by call {call_id}")
    if env.status.code != pb.OK:
        raise error_for(env.status.code, env.status.message)
    reply = reply_cls()
    try:
        reply.ParseFromString(env.payload)
    except DecodeError as e:
        raise Internal(f"undecodable {reply_cls.DESCRIPTOR.name} payload: {e}") from None
    return reply


# --- scalar checks ---


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise InvalidArgument(f"{name} = {value} is outside [{lo}, {hi}]")
    return value


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str, not {type(value).__name__}")
    return value


def role_to_pb(role: Any) -> int:
    """Maps "system" / "context" / "user" / "assistant" (or a Role number) to braid_pb2.Role."""
    if isinstance(role, str):
        r = _ROLES.get(role.lower())
        if r is None:
            raise InvalidArgument(f"unknown role {role!r} (system, context, user, assistant)")
        return r
    if isinstance(role, int) and not isinstance(role, bool) and role in _ROLE_NAMES:
        return role
    raise InvalidArgument(f"unknown role {role!r}")


def role_name(role: int) -> str:
    """The lower-case name of a braid_pb2.Role number."""
    return _ROLE_NAMES.get(role, f"role{role}")


def token_ids(name: str, ids: Iterable[Any]) -> List[int]:
    """Checks a sequence of token ids (int32 each) and returns it as a list."""
    if isinstance(ids, (str, bytes)):
        raise InvalidArgument(f"{name} must be a sequence of ints, not {type(ids).__name__}")
    return [_int(name, t, _INT32_MIN, _INT32_MAX) for t in ids]


# --- chunks ---


def register_request(
    text: Optional[str],
    tokens: Optional[Sequence[int]],
    role: Any,
    namespace: str,
    pin: bool,
    precompute: bool,
) -> pb.RegisterChunkRequest:
    """Builds RegisterChunk's request; exactly one of text and tokens must be given."""
    if (text is None) == (tokens is None):
        raise InvalidArgument("register_chunk needs exactly one of text= and tokens=")
    req = pb.RegisterChunkRequest(namespace=_str("namespace", namespace), role=role_to_pb(role), pin=bool(pin), precompute=bool(precompute))
    if text is not None:
        req.text = _str("text", text)
    else:
        req.tokens.ids.extend(token_ids("tokens", tokens or ()))
    return req


def chunk_info(msg: pb.ChunkInfo, existed: bool = False) -> ChunkInfo:
    """Converts a ChunkInfo message."""
    return copy_fields(ChunkInfo, msg, role=role_name(msg.role), existed=existed)


def chunk_content(reply: pb.GetChunkReply, include_tokens: bool) -> ChunkInfo:
    """Converts GetChunk's reply (with the tokens and text when they were asked for)."""
    info = chunk_info(reply.chunk)
    if include_tokens:
        info = dataclasses.replace(info, token_ids=list(reply.token_ids), text=reply.text)
    return info


def chunk_id(value: Any) -> str:
    """Accepts a chunk id string, a ChunkInfo or a Chunk and returns the id."""
    if isinstance(value, (ChunkInfo, Chunk)):
        return value.id
    return _str("chunk id", value)


# --- generation ---


class GenerateOptions(TypedDict, total=False):
    """Keyword options of generate() and complete(); every one is optional.

    namespace: the tenant whose chunks the parts name ("" by default).
    max_tokens: tokens to generate at most (0 or unset: the server's 256).
    temperature: [0, 100], 0 is greedy; default 1.
    top_k: <= 0 is off. top_p: (0, 1]. min_p: [0, 1).
    repetition_penalty: (0, 10]. presence_penalty, frequency_penalty: [-2, 2].
    seed: same seed, same tokens (0 .. 2**64-1).
    logprobs: 0..20 alternatives per token (True means 0: the chosen token's only).
    stop: a stop string or a list of them. stop_token_ids: token ids that stop.
    ignore_eos: keep going past end-of-generation tokens.
    reuse_mode: "exact" (default), "independent" or "repair".
    retain_output: register the answer as an assistant chunk (FinalEvent.output_chunk_id).
    no_generation_prompt: do not append the template's assistant prompt.
    deadline: seconds the whole generation may take (server-side deadline).
    client_request_id: your id, echoed in logs and the final event.
    """

    namespace: str
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repetition_penalty: float
    presence_penalty: float
    frequency_penalty: float
    seed: int
    logprobs: "int | bool"
    stop: "str | Sequence[str]"
    stop_token_ids: Sequence[int]
    ignore_eos: bool
    reuse_mode: "str | int"
    retain_output: bool
    no_generation_prompt: bool
    deadline: float
    client_request_id: str


def parts_to_pb(parts: Any) -> List[pb.Part]:
    """Converts a composition to Part messages.

    ``parts`` is a plain string (one user turn) or a sequence whose items are
    Chunk, Text, Tokens, ChunkInfo (its chunk) or str (a user turn).
    """
    if isinstance(parts, (str, Chunk, Text, Tokens, ChunkInfo)):
        parts = [parts]
    if isinstance(parts, (bytes, bytearray)) or not isinstance(parts, (list, tuple)):
        raise InvalidArgument(f"a composition is a str or a list of parts, not {type(parts).__name__}")
    if not parts:
        raise InvalidArgument("a composition needs at least one part")
    out: List[pb.Part] = []
    for i, p in enumerate(parts):
        m = pb.Part()
        if isinstance(p, str):
            m.role = pb.ROLE_USER
            m.text = p
        elif isinstance(p, Text):
            m.role = role_to_pb(p.role)
            m.text = _str(f"parts[{i}].text", p.text)
        elif isinstance(p, (Chunk, ChunkInfo)):
            m.chunk_id = _str(f"parts[{i}].id", p.id)
        elif isinstance(p, Tokens):
            m.tokens.SetInParent()
            m.tokens.ids.extend(token_ids(f"parts[{i}].ids", p.ids))
        else:
            raise InvalidArgument(f"parts[{i}] is a {type(p).__name__}; use Chunk, Text, Tokens or str")
        out.append(m)
    return out


_KNOWN_OPTIONS = frozenset(GenerateOptions.__annotations__)


def generate_request(parts: Any, options: Dict[str, Any]) -> pb.GenerateRequest:
    """Builds Generate's request from a composition and GenerateOptions.

    Unknown option names raise TypeError (like a misspelt keyword argument);
    values the wire cannot carry raise InvalidArgument.
    """
    unknown = set(options) - _KNOWN_OPTIONS
    if unknown:
        raise TypeError(f"unknown generate option(s): {', '.join(sorted(unknown))}")
    o = {k: v for k, v in options.items() if v is not None}
    req = pb.GenerateRequest(namespace=_str("namespace", o.get("namespace", "")))
    req.parts.extend(parts_to_pb(parts))
    s = req.sampling
    if "max_tokens" in o:
        req.max_tokens = _int("max_tokens", o["max_tokens"], 0, _UINT32_MAX)
    if "temperature" in o:
        s.temperature.value = _float("temperature", o["temperature"])
    if "top_k" in o:
        s.top_k = _int("top_k", o["top_k"], _INT32_MIN, _INT32_MAX)
    if "top_p" in o:
        s.top_p.value = _float("top_p", o["top_p"])
    if "min_p" in o:
        s.min_p = _float("min_p", o["min_p"])
    if "repetition_penalty" in o:
        s.repetition_penalty.value = _float("repetition_penalty", o["repetition_penalty"])
    if "presence_penalty" in o:
        s.presence_penalty = _float("presence_penalty", o["presence_penalty"])
    if "frequency_penalty" in o:
        s.frequency_penalty = _float("frequency_penalty", o["frequency_penalty"])
    if "seed" in o:
        s.seed.value = _int("seed", o["seed"], 0, _UINT64_MAX)
    lp = o.get("logprobs")
    if lp is not None and lp is not False:
        s.logprobs.value = 0 if lp is True else _int("logprobs", lp, _INT32_MIN, _INT32_MAX)
    if "stop" in o:
        stop = o["stop"]
        stops = [stop] if isinstance(stop, str) else list(stop)
        req.stop.extend(_str("stop", x) for x in stops)
    if "stop_token_ids" in o:
        req.stop_token_ids.extend(token_ids("stop_token_ids", o["stop_token_ids"]))
    req.ignore_eos = bool(o.get("ignore_eos", False))
    if "reuse_mode" in o:
        mode = o["reuse_mode"]
        if isinstance(mode, str):
            if mode.lower() not in _REUSE:
                raise InvalidArgument(f"unknown reuse_mode {mode!r} (exact, independent, repair)")
            req.reuse_mode = _REUSE[mode.lower()]
        else:
            req.reuse_mode = _int("reuse_mode", mode, 0, max(_REUSE.values()))
    req.retain_output = bool(o.get("retain_output", False))
    req.no_generation_prompt = bool(o.get("no_generation_prompt", False))
    if "deadline" in o:
        d = _float("deadline", o["deadline"])
        if not d > 0 or math.isinf(d):
            raise InvalidArgument(f"deadline = {d} must be a positive number of seconds")
        req.timeout_ms = min(_UINT64_MAX, max(1, int(math.ceil(d * 1000))))
    if "client_request_id" in o:
        req.client_request_id = _str("client_request_id", o["client_request_id"])
    else:
        # an id of our own, so that braidd recognises this call if nng resends
        # it after a dropped connection
        req.client_request_id = "py-" + secrets.token_hex(8)
    return req


D = TypeVar("D")


def copy_fields(cls: Type[D], msg: Message, **overrides: Any) -> D:
    """Builds dataclass ``cls`` from the same-named fields of ``msg`` (then ``overrides``)."""
    values = {f: getattr(msg, f) for f in cls.__dataclass_fields__ if f not in overrides and hasattr(msg, f)}  # type: ignore[attr-defined]
    return cls(**values, **overrides)


def usage(msg: pb.Usage) -> Usage:
    """Converts a Usage message."""
    return copy_fields(Usage, msg)


def event(msg: pb.StreamEvent) -> Event:
    """Converts one StreamEvent message (token or final)."""
    kind = msg.WhichOneof("event")
    if kind == "token":
        t = msg.token
        return TokenEvent(
            token_id=t.token_id,
            text=t.text,
            logprob=t.logprob.logprob if t.HasField("logprob") else None,
            top_logprobs=[TokenLogprob(x.token_id, x.logprob, x.text) for x in t.top_logprobs],
            seq=msg.seq,
        )
    if kind == "final":
        f = msg.final
        return FinalEvent(
            finish_reason=_FINISH.get(f.finish_reason, f"reason{f.finish_reason}"),
            usage=usage(f.usage),
            output_chunk_id=f.output_chunk_id or None,
            text=f.text,
            client_request_id=f.client_request_id,
            status_code=f.status.code,
            status_message=f.status.message,
            seq=msg.seq,
        )
    raise Internal(f"stream event {msg.seq} carries neither a token nor a final event")


def final_error(ev: FinalEvent) -> Optional[BraidError]:
    """The error a final event reports, or None.

    A generation that failed (finish_reason "error", or any non-OK status other
    than CANCELLED) is an error; a cancelled one is an ordinary end that the
    caller asked for, reported by the final event itself.
    """
    if ev.finish_reason == "error":
        code = ev.status_code if ev.status_code != pb.OK else pb.UNKNOWN
        return error_for(code, ev.status_message or "generation failed")
    if ev.status_code not in (pb.OK, pb.CANCELLED):
        return error_for(ev.status_code, ev.status_message)
    return None


class StreamCursor:
    """The client's position in one stream: the last sequence number it holds.

    Feed it each StreamNext reply; it returns the new events in order, drops
    events it already has (a replayed reply after a retry) and raises DataLoss
    when a sequence number is skipped, so a caller never sees a gap or a
    duplicate. Not thread-safe: one cursor is read by one consumer.
    """

    def __init__(self, stream_id: int, last_seq: int = 0) -> None:
        self.stream_id: int = _int("stream_id", stream_id, 0, _UINT64_MAX)
        self.last_seq: int = _int("last_seq", last_seq, 0, _UINT64_MAX)
        self.done: bool = False

    def next_request(self, max_wait_s: float, max_events: int = 0) -> pb.StreamNextRequest:
        """The StreamNext request that acknowledges everything held so far."""
        return pb.StreamNextRequest(
            stream_id=self.stream_id,
            ack_seq=self.last_seq,
            max_wait_ms=max(1, min(_UINT32_MAX, int(max_wait_s * 1000))),
            max_events=max_events,
        )

    def feed(self, reply: pb.StreamNextReply) -> List[Event]:
        """Returns the events of ``reply`` not seen before, advancing last_seq."""
        out: List[Event] = []
        for m in reply.events:
            if self.done or m.seq <= self.last_seq:
                continue
            if m.seq != self.last_seq + 1:
                raise DataLoss(f"stream {self.stream_id}: event {m.seq} follows {self.last_seq}; events were lost")
            ev = event(m)
            self.last_seq = m.seq
            out.append(ev)
            if isinstance(ev, FinalEvent):
                self.done = True
        return out


class CompletionBuilder:
    """Accumulates a stream's events into a Completion."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.parts: List[str] = []
        self.ids: List[int] = []
        self.logprobs: List[Optional[float]] = []

    def add(self, ev: Event) -> Optional[Completion]:
        """Adds one event; returns the Completion once the final event arrives."""
        if isinstance(ev, TokenEvent):
            self.parts.append(ev.text)
            self.ids.append(ev.token_id)
            self.logprobs.append(ev.logprob)
            return None
        self.parts.append(ev.text)
        return Completion(
            text="".join(self.parts),
            token_ids=self.ids,
            finish_reason=ev.finish_reason,
            usage=ev.usage,
            output_chunk_id=ev.output_chunk_id,
            stream_id=self.stream_id,
            logprobs=self.logprobs,
            client_request_id=ev.client_request_id,
        )


# --- service information ---


def stats(msg: pb.StatsReply) -> Stats:
    """Converts Stats' reply."""
    return copy_fields(Stats, msg)


def model_info(msg: pb.ModelInfoReply) -> ModelInfo:
    """Converts ModelInfo's reply."""
    return copy_fields(ModelInfo, msg)


def health(msg: pb.HealthReply) -> Health:
    """Converts Health's reply."""
    return Health(
        serving=msg.serving_status == pb.HealthReply.SERVING,
        status=pb.HealthReply.ServingStatus.Name(msg.serving_status),
        version=msg.version,
        backend=msg.backend,
        model=msg.model,
        uptime_ms=msg.uptime_ms,
    )
