"""The blocking braid client: Client (thread-safe; one connection, many calls in
flight) and Stream, the iterator over one generation's events.
"""

from __future__ import annotations

import time
from typing import Any, Iterator, List, Optional, Sequence

from . import _api
from ._api import RETRYABLE, ClientBase, Spec, StreamState, StreamView
from ._wire import CompletionBuilder, GenerateOptions
from .errors import BraidError, InvalidArgument
from .types import ChunkInfo, Completion, Event, Health, ModelInfo, Stats

try:  # typing.Unpack types **options precisely (PEP 692); only checkers read it
    from typing import Unpack
except ImportError:  # pragma: no cover
    Unpack = None  # type: ignore[assignment]

__all__ = ["Client", "Stream"]


class Client(ClientBase):
    """A connection to one braidd.

    ``Client("tcp://127.0.0.1:7411", timeout=30.0)``: every unary call waits at
    most ``timeout`` seconds for its reply; a stream keeps retrying a poll that
    got no reply (with the same acknowledged sequence number, so nothing is
    lost or repeated) for ``timeout`` seconds before it gives up. ``poll_wait``
    is how long one StreamNext long poll waits on the server for a new event.

    TLS: ``Client("tls+tcp://HOST:PORT", tls_ca_file="ca.pem")`` verifies the
    server's certificate against the CA(s) in that PEM file and the host name
    of the address (or ``tls_server_name``); a tls+tcp:// address without a CA
    file is refused, and a certificate that does not verify raises Unavailable
    here, at construction. ``tls_config`` (a pynng.TLSConfig) replaces both.

    The client is thread-safe: each call uses its own nng context, so many
    threads can run calls and iterate streams on one Client at once. Use it as
    a context manager, or call close().

    Every failure raises a :class:`braid.BraidError` subclass.
    """

    # --- plumbing ---

    def _unary(self, spec: Spec, timeout: Optional[float] = None) -> Any:
        t = self.timeout if timeout is None else timeout
        call_id, data = self._encode(spec, t)
        raw = self._t.exchange(data, t, spec.method)
        return self._decode(spec, call_id, raw)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection. Calls and streams in flight fail with Unavailable;
        their streams stay on the server (until its idle timeout) and can be
        resumed from another Client with attach()."""
        self._t.close()

    # --- chunks ---

    def register_chunk(
        self,
        text: Optional[str] = None,
        tokens: Optional[Sequence[int]] = None,
        role: str = "context",
        namespace: str = "",
        pin: bool = False,
        precompute: bool = False,
    ) -> ChunkInfo:
        """Registers content as a chunk and returns it (``existed`` tells a duplicate).

        Give exactly one of ``text`` (framed by the chat template for ``role``:
        "system", "context", "user" or "assistant") or ``tokens`` (ids used as
        given). ``pin`` keeps its KV resident; ``precompute`` computes its KV now
        instead of on first use.
        """
        return self._unary(_api.register_chunk(text, tokens, role, namespace, pin, precompute))

    def get_chunk(self, id: Any, namespace: str = "", include_tokens: bool = False) -> ChunkInfo:
        """Returns one chunk (``id``: the id, a ChunkInfo or a Chunk); with
        ``include_tokens`` its token ids and decoded text too. NotFound if unknown."""
        return self._unary(_api.get_chunk(id, namespace, include_tokens))

    def list_chunks(self, namespace: str = "", all_namespaces: bool = False) -> List[ChunkInfo]:
        """Lists the chunks of a namespace (or of every namespace)."""
        return self._unary(_api.list_chunks(namespace, all_namespaces))

    def delete_chunk(self, id: Any, namespace: str = "") -> None:
        """Deletes a chunk; its KV is freed once no running generation uses it."""
        self._unary(_api.delete_chunk(id, namespace))

    def pin_chunk(self, id: Any, pinned: bool = True, namespace: str = "") -> ChunkInfo:
        """Pins (or with ``pinned=False`` unpins) a chunk's KV in the pool."""
        return self._unary(_api.pin_chunk(id, pinned, namespace))

    # --- generation ---

    def generate(self, parts: Any, **options: "Unpack[GenerateOptions]") -> "Stream":
        """Starts a generation and returns the iterator over its events.

        ``parts`` is a plain string (the user prompt) or a list of parts:
        ``Chunk(id)`` (or a ChunkInfo), ``Text("...", role="user")``,
        ``Tokens([...])`` or str (a user turn). ``options`` are those of
        :class:`braid._wire.GenerateOptions` (max_tokens, temperature, top_k,
        top_p, min_p, penalties, seed, logprobs, stop, stop_token_ids,
        ignore_eos, reuse_mode, retain_output, no_generation_prompt, deadline,
        client_request_id, namespace).

        Iterating yields TokenEvent objects and, last, one FinalEvent; a failed
        generation raises its BraidError instead. A cancelled one ends with a
        FinalEvent whose finish_reason is "cancelled".
        """
        stream_id = self._unary(_api.generate(parts, options))
        return Stream(self, stream_id)

    def complete(self, parts: Any, **options: "Unpack[GenerateOptions]") -> Completion:
        """Runs a generation to its end and returns the whole answer.

        Same arguments as generate(). Raises the generation's error if it failed.
        """
        with self.generate(parts, **options) as stream:
            builder = CompletionBuilder(stream.stream_id)
            for ev in stream:
                done = builder.add(ev)
                if done is not None:
                    return done
        raise BraidError(f"stream {stream.stream_id} ended without a final event")

    def attach(self, stream_id: int, last_seq: int = 0) -> "Stream":
        """Resumes a stream started elsewhere (another Client, an earlier process).

        ``last_seq`` is the sequence number of the last event already held
        (Stream.last_seq); the iterator continues right after it.
        """
        return Stream(self, stream_id, last_seq)

    def cancel(self, stream_id: int) -> None:
        """Cancels a generation; its stream ends with finish_reason "cancelled"."""
        self._unary(_api.cancel(stream_id))

    # --- model and service ---

    def tokenize(self, text: str, parse_special: bool = False) -> List[int]:
        """Tokenizes text with the model's tokenizer (special-token text recognised
        when ``parse_special``)."""
        return self._unary(_api.tokenize(text, parse_special))

    def stats(self) -> Stats:
        """The service's counters: KV pool, chunks, generations, cache reuse, streams."""
        return self._unary(_api.stats())

    def model_info(self) -> ModelInfo:
        """The loaded model."""
        return self._unary(_api.model_info())

    def health(self, timeout: Optional[float] = None) -> Health:
        """Liveness and readiness (``timeout`` overrides the client's for this call)."""
        return self._unary(_api.health(), timeout)


class Stream(StreamView, Iterator[Event]):
    """The events of one generation, read by long-polling StreamNext.

    Iterate it (once, from one thread) to get TokenEvent objects and the final
    FinalEvent. ``stream_id`` and ``last_seq`` let another Client resume it with
    Client.attach(). Used as a context manager, leaving the block early cancels
    the generation.
    """

    def __init__(self, client: Client, stream_id: int, last_seq: int = 0) -> None:
        if not isinstance(client, Client):
            raise InvalidArgument("Stream needs a Client")
        self._client = client
        self._s = StreamState(client, stream_id, last_seq)

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Event:
        s = self._s
        while not s.pending:
            if s.cursor.done:
                self._ack_final()
                raise StopIteration
            self._poll()
        try:
            return s.pop()
        finally:
            if s.final is not None:
                self._ack_final()

    def _poll(self) -> None:
        s = self._s
        spec = s.poll_spec()
        timeout = s.poll_timeout()
        started = time.monotonic()
        while True:
            call_id, data = self._client._encode(spec, timeout)
            try:
                raw = self._client._t.exchange(data, timeout, spec.method)
            except RETRYABLE as e:
                s.transport_failed(e, started)
                continue
            s.received(self._client._decode(spec, call_id, raw))
            return

    def _ack_final(self) -> None:
        spec = self._s.ack_spec()
        if spec is None:
            return
        try:
            self._client._unary(spec, timeout=min(2.0, self._client.timeout))
        except BraidError:
            pass  # best effort: the server drops the stream after its idle timeout anyway

    def cancel(self) -> None:
        """Cancels the generation; iteration then ends with a "cancelled" final event."""
        self._client.cancel(self.stream_id)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self._s.cursor.done and not self._client.closed:
            try:
                self.cancel()
            except BraidError:
                pass  # the stream may already be gone; nothing else to release
