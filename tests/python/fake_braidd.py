"""A stand-in braidd for the client's own tests: speaks the wire contract of
proto/braid.proto over a real nng REP socket, with just enough behaviour to
exercise the client's transport and stream logic without a model: Health,
Generate (deterministic "tokens": the bytes of the prompt's last text part,
one every few milliseconds), StreamNext long polls with acknowledged sequence
numbers, Cancel, and a configurable fault: swallowing the first poll of each
stream (a lost reply) so that the client must retry with the same ack_seq.

It is not a model of braidd's limits or validation; tests of those run
against the real server.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List

import pynng

from braid import braid_pb2 as pb


@dataclass
class _Stream:
    tokens: List[int]
    events: List[pb.StreamEvent] = field(default_factory=list)
    acked: int = 0
    cancelled: bool = False
    done: bool = False
    polls: int = 0


class FakeBraidd:
    """Serves on ``address`` with ``workers`` REP contexts (each a thread)."""

    def __init__(self, address: str, workers: int = 48, token_interval: float = 0.002, swallow_first_poll: bool = False):
        self.address = address
        self.token_interval = token_interval
        self.swallow_first_poll = swallow_first_poll
        self.sock = pynng.Rep0(listen=address)
        self.lock = threading.Condition()
        self.streams: Dict[int, _Stream] = {}
        self.next_id = 100
        self.stream_next_calls = 0
        self.acks: List[tuple] = []
        self.closing = False
        self.threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    # --- plumbing ---

    def _worker(self) -> None:
        ctx = self.sock.new_context()
        while True:
            try:
                data = ctx.recv()
            except pynng.NNGException:
                break
            env = pb.RpcRequest.FromString(data)
            reply = self._dispatch(env)
            if reply is None:
                continue  # swallowed: the client never hears back on this call
            try:
                ctx.send(reply.SerializeToString())
            except pynng.NNGException:
                break
        try:
            ctx.close()
        except pynng.NNGException:
            ctx._context = None  # closed with the socket; keep __del__ from closing it again

    def _dispatch(self, env: pb.RpcRequest):
        method = env.method.rsplit("/", 1)[-1]
        out = pb.RpcReply(call_id=env.call_id)
        fn = getattr(self, "_m_" + method, None)
        if fn is None:
            out.status.code = pb.UNIMPLEMENTED
            out.status.message = f"unknown method '{env.method}'"
            return out
        try:
            payload = fn(env.payload)
        except KeyError as e:
            out.status.code, out.status.message = pb.NOT_FOUND, f"no stream {e}"
            return out
        if payload is None:
            return None
        if isinstance(payload, pb.Status):
            out.status.CopyFrom(payload)
        else:
            out.payload = payload.SerializeToString()
        return out

    # --- methods ---

    def _m_Health(self, data: bytes):
        return pb.HealthReply(serving_status=pb.HealthReply.SERVING, version="fake", backend="none")

    def _m_Generate(self, data: bytes):
        req = pb.GenerateRequest.FromString(data)
        texts = [p.text for p in req.parts if p.WhichOneof("content") == "text"]
        if not texts:
            return pb.Status(code=pb.INVALID_ARGUMENT, message="no text part")
        if texts[-1] == "fail":
            toks = [ord("x")]
        else:
            toks = list(texts[-1].encode())[: req.max_tokens or 256]
        with self.lock:
            sid = self.next_id
            self.next_id += 1
            st = self.streams[sid] = _Stream(tokens=toks)
        threading.Thread(target=self._produce, args=(sid, st, texts[-1] == "fail"), daemon=True).start()
        return pb.GenerateReply(stream_id=sid)

    def _produce(self, sid: int, st: _Stream, fail: bool) -> None:
        for t in st.tokens:
            time.sleep(self.token_interval)
            with self.lock:
                if st.cancelled:
                    break
                ev = pb.StreamEvent(seq=len(st.events) + 1)
                ev.token.token_id = t
                ev.token.text = chr(t)
                st.events.append(ev)
                self.lock.notify_all()
        with self.lock:
            ev = pb.StreamEvent(seq=len(st.events) + 1)
            f = ev.final
            if fail:
                f.finish_reason = pb.FINISH_REASON_ERROR
                f.status.code = pb.RESOURCE_EXHAUSTED
                f.status.message = "KV pool exhausted"
            elif st.cancelled:
                f.finish_reason = pb.FINISH_REASON_CANCELLED
                f.status.code = pb.CANCELLED
            else:
                f.finish_reason = pb.FINISH_REASON_LENGTH
            f.usage.prompt_tokens = 3
            f.usage.completion_tokens = len(st.events)
            f.text = "!"
            st.events.append(ev)
            st.done = True
            self.lock.notify_all()

    def _m_StreamNext(self, data: bytes):
        req = pb.StreamNextRequest.FromString(data)
        deadline = time.monotonic() + (req.max_wait_ms or 10000) / 1000
        with self.lock:
            self.stream_next_calls += 1
            st = self.streams[req.stream_id]
            self.acks.append((req.stream_id, req.ack_seq))
            st.polls += 1
            if self.swallow_first_poll and st.polls == 1:
                return None
            st.acked = max(st.acked, req.ack_seq)
            if st.done and st.acked >= len(st.events):
                del self.streams[req.stream_id]
                return pb.Status(code=pb.NOT_FOUND, message="stream finished")
            while len(st.events) <= req.ack_seq and not self.closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(left)
            rep = pb.StreamNextReply()
            rep.events.extend(st.events[req.ack_seq :])
            return rep

    def _m_Cancel(self, data: bytes):
        req = pb.CancelRequest.FromString(data)
        with self.lock:
            self.streams[req.stream_id].cancelled = True
        return pb.CancelReply()

    def close(self) -> None:
        with self.lock:
            self.closing = True
            self.lock.notify_all()
        self.sock.close()
