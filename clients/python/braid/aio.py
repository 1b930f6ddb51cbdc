"""The asyncio braid client: AsyncClient (the methods of Client as coroutines)
and AsyncStream (``async for`` over one generation's events).

It runs on pynng's asyncio support (Context.asend/arecv), one nng context per
call, so any number of tasks can await calls and streams on one AsyncClient.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, List, Optional, Sequence

from . import _api
from ._api import RETRYABLE, ClientBase, Spec, StreamState, StreamView
from ._wire import CompletionBuilder, GenerateOptions
from .errors import BraidError, InvalidArgument
from .types import ChunkInfo, Completion, Event, Health, ModelInfo, Stats

try:
    from typing import Unpack
except ImportError:  # pragma: no cover
    Unpack = None  # type: ignore[assignment]

__all__ = ["AsyncClient", "AsyncStream"]


class AsyncClient(ClientBase):
    """The asyncio twin of :class:`braid.Client`: same arguments, same methods,
    each a coroutine; generate() returns an AsyncStream for ``async for``.

    Use ``async with AsyncClient(addr) as c:`` or call ``await c.close()``.
    """

    async def _unary(self, spec: Spec, timeout: Optional[float] = None) -> Any:
        t = self.timeout if timeout is None else timeout
        call_id, data = self._encode(spec, t)
        raw = await self._t.aexchange(data, t, spec.method)
        return self._decode(spec, call_id, raw)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; calls and streams in flight fail with Unavailable."""
        self._t.close()

    async def register_chunk(
        self,
        text: Optional[str] = None,
        tokens: Optional[Sequence[int]] = None,
        role: str = "context",
        namespace: str = "",
        pin: bool = False,
        precompute: bool = False,
    ) -> ChunkInfo:
        """See Client.register_chunk."""
        return await self._unary(_api.register_chunk(text, tokens, role, namespace, pin, precompute))

    async def get_chunk(self, id: Any, namespace: str = "", include_tokens: bool = False) -> ChunkInfo:
        """See Client.get_chunk."""
        return await self._unary(_api.get_chunk(id, namespace, include_tokens))

    async def list_chunks(self, namespace: str = "", all_namespaces: bool = False) -> List[ChunkInfo]:
        """See Client.list_chunks."""
        return await self._unary(_api.list_chunks(namespace, all_namespaces))

    async def delete_chunk(self, id: Any, namespace: str = "") -> None:
        """See Client.delete_chunk."""
        await self._unary(_api.delete_chunk(id, namespace))

    async def pin_chunk(self, id: Any, pinned: bool = True, namespace: str = "") -> ChunkInfo:
        """See Client.pin_chunk."""
        return await self._unary(_api.pin_chunk(id, pinned, namespace))

    async def generate(self, parts: Any, **options: "Unpack[GenerateOptions]") -> "AsyncStream":
        """Starts a generation; ``async for ev in await client.generate(...)``.
        See Client.generate for the parts and options."""
        stream_id = await self._unary(_api.generate(parts, options))
        return AsyncStream(self, stream_id)

    async def complete(self, parts: Any, **options: "Unpack[GenerateOptions]") -> Completion:
        """Runs a generation to its end and returns the whole answer (see Client.complete)."""
        stream = await self.generate(parts, **options)
        async with stream:
            builder = CompletionBuilder(stream.stream_id)
            async for ev in stream:
                done = builder.add(ev)
                if done is not None:
                    return done
        raise BraidError(f"stream {stream.stream_id} ended without a final event")

    def attach(self, stream_id: int, last_seq: int = 0) -> "AsyncStream":
        """Resumes a stream after ``last_seq`` (see Client.attach)."""
        return AsyncStream(self, stream_id, last_seq)

    async def cancel(self, stream_id: int) -> None:
        """See Client.cancel."""
        await self._unary(_api.cancel(stream_id))

    async def tokenize(self, text: str, parse_special: bool = False) -> List[int]:
        """See Client.tokenize."""
        return await self._unary(_api.tokenize(text, parse_special))

    async def stats(self) -> Stats:
        """See Client.stats."""
        return await self._unary(_api.stats())

    async def model_info(self) -> ModelInfo:
        """See Client.model_info."""
        return await self._unary(_api.model_info())

    async def health(self, timeout: Optional[float] = None) -> Health:
        """See Client.health."""
        return await self._unary(_api.health(), timeout)


class AsyncStream(StreamView, AsyncIterator[Event]):
    """The events of one generation for ``async for`` (see braid.Stream)."""

    def __init__(self, client: AsyncClient, stream_id: int, last_seq: int = 0) -> None:
        if not isinstance(client, AsyncClient):
            raise InvalidArgument("AsyncStream needs an AsyncClient")
        self._client = client
        self._s = StreamState(client, stream_id, last_seq)

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> Event:
        s = self._s
        while not s.pending:
            if s.cursor.done:
                await self._ack_final()
                raise StopAsyncIteration
            await self._poll()
        try:
            return s.pop()
        finally:
            if s.final is not None:
                await self._ack_final()

    async def _poll(self) -> None:
        s = self._s
        spec = s.poll_spec()
        timeout = s.poll_timeout()
        started = time.monotonic()
        while True:
            call_id, data = self._client._encode(spec, timeout)
            try:
                raw = await self._client._t.aexchange(data, timeout, spec.method)
            except RETRYABLE as e:
                s.transport_failed(e, started)
                continue
            s.received(self._client._decode(spec, call_id, raw))
            return

    async def _ack_final(self) -> None:
        spec = self._s.ack_spec()
        if spec is None:
            return
        try:
            await self._client._unary(spec, timeout=min(2.0, self._client.timeout))
        except BraidError:
            pass  # best effort: the server drops the stream after its idle timeout anyway

    async def cancel(self) -> None:
        """Cancels the generation; iteration then ends with a "cancelled" final event."""
        await self._client.cancel(self.stream_id)

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._s.cursor.done and not self._client.closed:
            try:
                await self.cancel()
            except BraidError:
                pass  # the stream may already be gone
