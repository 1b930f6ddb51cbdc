"""The nng side of the braid clients: one REQ socket per client, one nng context
per in-flight call.

A REQ context holds exactly one outstanding request, so giving every call its
own context lets any number of calls (unary calls and parked long polls) share
one connection from many threads or tasks. nng's REQ protocol resends a
request that got no reply within its resend time; a StreamNext long poll is
parked on the server by design, so the resend time is set longer than any
call's own limit, and the only resends left are nng's after a reconnect (which
the long-poll protocol tolerates: a repeated StreamNext with the same ack_seq
returns the same events).
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Optional
from urllib.parse import urlsplit

import pynng
from pynng._nng import lib  # the per-context timeout options have no pynng wrapper

from .errors import DeadlineExceeded, InvalidArgument, Unavailable

#: Default seconds a StreamNext long poll waits on the server for an event.
DEFAULT_POLL_WAIT = 5.0
#: Largest reply accepted (a ListChunks of a big catalogue, a chunk's tokens).
DEFAULT_MAX_MESSAGE = 64 << 20


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class Transport:
    """A REQ socket dialled to one braidd address, shared by all calls of a client.

    Thread-safe: every call opens its own context. close() makes calls in flight
    and later calls fail with Unavailable.
    """

    def __init__(
        self,
        address: str,
        timeout: float,
        poll_wait: float,
        max_message: int = DEFAULT_MAX_MESSAGE,
        tls_config: Optional[Any] = None,
        tls_ca_file: Optional[str] = None,
        tls_server_name: Optional[str] = None,
    ) -> None:
        if not isinstance(address, str) or "://" not in address:
            raise InvalidArgument(f"address must be a URL such as tcp://127.0.0.1:7411, not {address!r}")
        if not timeout > 0 or not poll_wait > 0:
            raise InvalidArgument("timeout and poll_wait must be positive")
        if tls_config is None:
            tls_config = _tls_config(address, tls_ca_file, tls_server_name)
        elif tls_ca_file is not None or tls_server_name is not None:
            raise InvalidArgument("give tls_config or tls_ca_file/tls_server_name, not both")
        self._tls = tls_ca_file, tls_server_name
        self.address = address
        self.timeout = float(timeout)
        self.poll_wait = float(poll_wait)
        # Longer than any call may last: a parked long poll must never be resent.
        self._resend_ms = _ms(2 * (self.timeout + self.poll_wait) + 60.0)
        kw: dict = {}
        if tls_config is not None:
            kw["tls_config"] = tls_config
        self._sock = pynng.Req0(
            resend_time=self._resend_ms,
            recv_max_size=max_message,
            reconnect_time_min=50,
            reconnect_time_max=1000,
            **kw,
        )
        self._closed = False
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()
        try:
            # block=None: a blocking dial, falling back to a background dial that
            # keeps retrying when the server is not up yet.
            self._sock.dial(address, block=None)
        except pynng.NNGException as e:
            self._sock.close()
            raise Unavailable(f"cannot dial {address}: {e}{self._dial_hint(e)}") from None

    def _dial_hint(self, e: pynng.NNGException) -> str:
        """What a failed dial most likely means, for the error message."""
        if isinstance(e, (pynng.CryptoError, pynng.AuthenticationError)) and self._tls[0]:
            return (f" (the TLS handshake failed: the server's certificate is not signed by a CA "
                    f"in {self._tls[0]} or not issued to {self._tls[1] or _host(self.address)!r})")
        if e.errno in (lib.NNG_ECONNSHUT, lib.NNG_ECONNRESET, lib.NNG_ECONNABORTED,
                       lib.NNG_EPROTO, lib.NNG_ECRYPTO):
            return (" (the server dropped the connection during the handshake: a tls+tcp:// "
                    "listener dialled as tcp://, or the reverse?)")
        return ""

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    def next_call_id(self) -> int:
        """A call id unique within this client."""
        with self._id_lock:
            return next(self._ids)

    def open_context(self, timeout: float) -> pynng.Context:
        """Opens a context whose send and receive each give up after ``timeout`` seconds.

        The caller owns the context and closes it when the call ends.
        """
        if self._closed:
            raise Unavailable("the client is closed")
        try:
            ctx = self._sock.new_context()
        except pynng.NNGException as e:
            raise Unavailable(f"the client is closed ({e})") from None
        c = ctx.context
        ms = _ms(timeout)
        lib.nng_ctx_set_ms(c, b"send-timeout", ms)
        lib.nng_ctx_set_ms(c, b"recv-timeout", ms)
        lib.nng_ctx_set_ms(c, b"req:resend-time", self._resend_ms)
        return ctx

    def map_error(self, e: pynng.NNGException, sending: bool, method: str, timeout: float) -> Exception:
        """The BraidError for an nng failure of one call."""
        if self._closed or isinstance(e, pynng.Closed):
            return Unavailable("the client is closed")
        if isinstance(e, pynng.Timeout):
            if sending:
                return Unavailable(f"{method}: no connection to {self.address} within {timeout:g} s")
            return DeadlineExceeded(f"{method}: no reply from {self.address} within {timeout:g} s")
        return Unavailable(f"{method}: {e}")

    def exchange(self, data: bytes, timeout: float, method: str) -> bytes:
        """Sends one request and waits for its reply (blocking; releases the GIL)."""
        ctx = self.open_context(timeout)
        sending = True
        try:
            ctx.send(data)
            sending = False
            return ctx.recv()
        except pynng.NNGException as e:
            raise self.map_error(e, sending, method, timeout) from None
        finally:
            _close_quietly(ctx)

    async def aexchange(self, data: bytes, timeout: float, method: str) -> bytes:
        """exchange() for asyncio: the same, awaiting nng's aio completions."""
        ctx = self.open_context(timeout)
        sending = True
        try:
            await ctx.asend(data)
            sending = False
            return await ctx.arecv()
        except pynng.NNGException as e:
            raise self.map_error(e, sending, method, timeout) from None
        finally:
            _close_quietly(ctx)

    def close(self) -> None:
        """Closes the socket; calls in flight fail with Unavailable. Idempotent."""
        if not self._closed:
            self._closed = True
            self._sock.close()


def _host(address: str) -> str:
    return urlsplit(address).hostname or ""


def _tls_config(address: str, ca_file: Optional[str], server_name: Optional[str]) -> Optional[Any]:
    """The client TLS configuration for a tls+tcp:// address: the server's certificate
    must chain to a CA in ca_file and be issued to server_name (default: the
    address's host). There is no unverified mode; None for other addresses."""
    if not address.startswith("tls+"):
        if ca_file is not None or server_name is not None:
            raise InvalidArgument(f"TLS options given for {address!r}, which is not a tls+tcp:// address")
        return None
    if not ca_file:
        raise InvalidArgument("a tls+tcp:// address needs tls_ca_file (PEM) to verify the server")
    if not os.path.isfile(ca_file):
        raise InvalidArgument(f"tls_ca_file {ca_file!r} is not a readable file")
    return pynng.TLSConfig(
        pynng.TLSConfig.MODE_CLIENT,
        server_name=server_name or _host(address),
        ca_files=[ca_file],
        auth_mode=pynng.TLSConfig.AUTH_MODE_REQUIRED,
    )


def _close_quietly(ctx: pynng.Context) -> None:
    try:
        ctx.close()
    except pynng.NNGException:
        pass  # the socket was closed under it: nothing left to release
