"""What the sync and async clients have in common: for each method of service
Braid, the request to send and the conversion of its reply (a "spec"), the
unary call built on a transport exchange, and the stream state behind both
stream iterators. The clients only add the blocking or awaiting I/O.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Deque, List, NamedTuple, Optional

from google.protobuf.message import Message

from . import _wire
from . import braid_pb2 as pb
from ._transport import DEFAULT_MAX_MESSAGE, DEFAULT_POLL_WAIT, Transport
from .errors import BraidError, DeadlineExceeded, Unavailable
from .types import Event, FinalEvent


class Spec(NamedTuple):
    """One unary call: the method's short name, its request and how to convert its reply."""

    method: str
    request: Message
    convert: Callable[[Any], Any]


def register_chunk(*args: Any) -> Spec:
    """RegisterChunk; ``args`` are those of _wire.register_request."""
    req = _wire.register_request(*args)
    return Spec("RegisterChunk", req, lambda r: _wire.chunk_info(r.chunk, existed=r.existed))


def get_chunk(id: Any, namespace: str, include_tokens: bool) -> Spec:
    req = pb.GetChunkRequest(namespace=namespace, id=_wire.chunk_id(id), include_tokens=include_tokens)
    return Spec("GetChunk", req, lambda r: _wire.chunk_content(r, include_tokens))


def list_chunks(namespace: str, all_namespaces: bool) -> Spec:
    req = pb.ListChunksRequest(namespace=namespace, all_namespaces=all_namespaces)
    return Spec("ListChunks", req, lambda r: [_wire.chunk_info(c) for c in r.chunks])


def delete_chunk(id: Any, namespace: str) -> Spec:
    return Spec("DeleteChunk", pb.DeleteChunkRequest(namespace=namespace, id=_wire.chunk_id(id)), lambda r: None)


def pin_chunk(id: Any, pinned: bool, namespace: str) -> Spec:
    req = pb.PinChunkRequest(namespace=namespace, id=_wire.chunk_id(id), pinned=pinned)
    return Spec("PinChunk", req, lambda r: _wire.chunk_info(r.chunk))


def generate(parts: Any, options: dict) -> Spec:
    return Spec("Generate", _wire.generate_request(parts, options), lambda r: r.stream_id)


def cancel(stream_id: int) -> Spec:
    return Spec("Cancel", pb.CancelRequest(stream_id=stream_id), lambda r: None)


def tokenize(text: str, parse_special: bool) -> Spec:
    req = pb.TokenizeRequest(text=text, parse_special=parse_special)
    return Spec("Tokenize", req, lambda r: list(r.token_ids))


def stats() -> Spec:
    return Spec("Stats", pb.StatsRequest(), _wire.stats)


def model_info() -> Spec:
    return Spec("ModelInfo", pb.ModelInfoRequest(), _wire.model_info)


def health() -> Spec:
    return Spec("Health", pb.HealthRequest(), _wire.health)


class ClientBase:
    """Connection settings and the call plumbing shared by Client and AsyncClient."""

    def __init__(
        self,
        address: str,
        timeout: float = 30.0,
        *,
        poll_wait: float = DEFAULT_POLL_WAIT,
        max_message: int = DEFAULT_MAX_MESSAGE,
        tls_config: Optional[Any] = None,
        tls_ca_file: Optional[str] = None,
        tls_server_name: Optional[str] = None,
    ) -> None:
        self._t = Transport(address, timeout, poll_wait, max_message, tls_config, tls_ca_file,
                            tls_server_name)

    @property
    def address(self) -> str:
        """The braidd URL this client is dialled to."""
        return self._t.address

    @property
    def timeout(self) -> float:
        """Seconds a unary call waits for its reply (and a stream for a lost server)."""
        return self._t.timeout

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._t.closed

    def _encode(self, spec: Spec, timeout: float) -> tuple[int, bytes]:
        call_id = self._t.next_call_id()
        return call_id, _wire.encode_call(spec.method, spec.request, call_id, timeout)

    @staticmethod
    def _decode(spec: Spec, call_id: int, raw: bytes) -> Any:
        return spec.convert(_wire.decode_reply(raw, call_id, _wire.METHODS[spec.method][1]))


class StreamState:
    """The consumer side of one stream, shared by Stream and AsyncStream.

    Holds the cursor (last sequence number seen), the events received but not
    yet handed out, and the retry budget of the current poll: a poll that fails
    in transport (no reply, a dropped connection) is repeated with the same
    ack_seq until ``retry_for`` seconds pass without any reply.
    """

    def __init__(self, client: ClientBase, stream_id: int, last_seq: int = 0) -> None:
        self.client = client
        self.cursor = _wire.StreamCursor(stream_id, last_seq)
        self.pending: Deque[Event] = collections.deque()
        self.final: Optional[FinalEvent] = None
        self.final_acked = False
        self.retry_for = client.timeout

    @property
    def exhausted(self) -> bool:
        """True when every event, the final one included, has been handed out."""
        return self.cursor.done and not self.pending

    def poll_spec(self) -> Spec:
        """The StreamNext call for the next poll (acknowledging what is held)."""
        req = self.cursor.next_request(self.client._t.poll_wait)
        return Spec("StreamNext", req, self.cursor.feed)

    def poll_timeout(self) -> float:
        """How long one poll may wait for its reply: the server's wait plus the call timeout."""
        return self.client._t.poll_wait + self.client.timeout

    def transport_failed(self, err: BraidError, started: float) -> None:
        """Decides after a transport failure of a poll: returns to retry, or raises."""
        if self.client.closed:
            raise Unavailable("the client is closed") from None
        # The first attempt had poll_timeout() to answer; retries get retry_for more.
        if time.monotonic() - started > self.poll_timeout() + self.retry_for:
            raise err

    def received(self, events: List[Event]) -> None:
        self.pending.extend(events)

    def pop(self) -> Event:
        """The next event; raises the final event's error when the generation failed."""
        ev = self.pending.popleft()
        if isinstance(ev, FinalEvent):
            self.final = ev
            err = _wire.final_error(ev)
            if err is not None:
                raise err
        return ev

    def ack_spec(self) -> Optional[Spec]:
        """The StreamNext that acknowledges the final event (so the server drops the
        stream at once instead of after its idle timeout), or None when not due."""
        if self.final is None or self.final_acked:
            return None
        self.final_acked = True
        req = pb.StreamNextRequest(stream_id=self.cursor.stream_id, ack_seq=self.cursor.last_seq, max_wait_ms=1, max_events=1)
        return Spec("StreamNext", req, lambda r: None)


class StreamView:
    """The read-only face of a stream, shared by Stream and AsyncStream."""

    _s: StreamState

    @property
    def stream_id(self) -> int:
        """The server's id of this stream."""
        return self._s.cursor.stream_id

    @property
    def last_seq(self) -> int:
        """The sequence number of the last event received (0 before the first)."""
        return self._s.cursor.last_seq

    @property
    def done(self) -> bool:
        """True once the final event has been handed out."""
        return self._s.exhausted

    @property
    def final(self) -> Optional[FinalEvent]:
        """The final event, once iteration reached it."""
        return self._s.final


#: Transport failures a poll retries (others, e.g. a server's NOT_FOUND, end the stream).
RETRYABLE = (DeadlineExceeded, Unavailable)
