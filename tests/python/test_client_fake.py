"""The client's transport and stream logic against a fake braidd over a real
nng socket (tests/python/fake_braidd.py): unary calls and their errors, a
stream assembled in order, a lost poll reply retried with the same ack_seq,
resumption from another Client after close(), a failed generation raising,
cancellation, and 32 concurrent streams from threads and from asyncio.

The fake answers Generate with the prompt's bytes as tokens, so each stream's
expected output is known."""

from __future__ import annotations

import asyncio
import time

import pytest

import braid
from conftest import free_port, run_in_threads
from fake_braidd import FakeBraidd


def _text(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, braid.TokenEvent))


def test_client_fake_health_and_unknown_method(fake: FakeBraidd) -> None:
    with braid.Client(fake.address, timeout=5) as c:
        h = c.health()
        assert h.serving and h.version == "fake"
        with pytest.raises(braid.Unimplemented, match="ListChunks"):
            c.list_chunks()
        assert c.health().serving  # the connection still serves after an error reply


def test_client_fake_stream_in_order_then_acks_final(fake: FakeBraidd) -> None:
    with braid.Client(fake.address, timeout=5) as c:
        stream = c.generate("hello world", max_tokens=100)
        events = list(stream)
        assert _text(events) == "hello world"
        assert [e.seq for e in events] == list(range(1, 13))
        final = events[-1]
        assert isinstance(final, braid.FinalEvent) and final.finish_reason == "length" and final.text == "!"
        assert stream.done and stream.final is final
        assert (stream.stream_id, 12) in fake.acks  # the final event was acknowledged
        comp = c.complete("abc")
        assert comp.text == "abc!" and comp.token_ids == [97, 98, 99] and comp.usage.completion_tokens == 3


def test_client_fake_no_server_is_unavailable() -> None:
    with braid.Client(f"tcp://127.0.0.1:{free_port()}", timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises((braid.Unavailable, braid.DeadlineExceeded)):
            c.health()
        assert time.monotonic() - t0 < 3


def test_client_fake_bad_address() -> None:
    with pytest.raises(braid.InvalidArgument):
        braid.Client("localhost:7411")


def test_client_fake_lost_poll_is_retried_with_same_ack() -> None:
    srv = FakeBraidd(f"tcp://127.0.0.1:{free_port()}", swallow_first_poll=True)
    try:
        with braid.Client(srv.address, timeout=0.3, poll_wait=0.2) as c:
            stream = c.generate("retry me")
            assert _text(list(stream)) == "retry me"
            acks = [a for sid, a in srv.acks if sid == stream.stream_id]
            assert acks[:2] == [0, 0]  # the swallowed poll and its retry asked for the same events
    finally:
        srv.close()


def test_client_fake_failed_generation_raises(fake: FakeBraidd) -> None:
    with braid.Client(fake.address, timeout=5) as c:
        seen = []
        with pytest.raises(braid.ResourceExhausted, match="KV pool"):
            for ev in c.generate("fail"):
                seen.append(ev)
        assert _text(seen) == "x"  # tokens before the failure were delivered
        with pytest.raises(braid.ResourceExhausted):
            c.complete("fail")


def test_client_fake_cancel_ends_with_cancelled_final(fake: FakeBraidd) -> None:
    fake.token_interval = 0.01
    with braid.Client(fake.address, timeout=5) as c:
        stream = c.generate("x" * 200)
        first = next(stream)
        assert isinstance(first, braid.TokenEvent)
        stream.cancel()
        rest = list(stream)
        assert isinstance(rest[-1], braid.FinalEvent) and rest[-1].finish_reason == "cancelled"
        assert len(rest) < 150


def test_client_fake_resume_after_close(fake: FakeBraidd) -> None:
    fake.token_interval = 0.005
    prompt = "resumable stream of tokens"
    c1 = braid.Client(fake.address, timeout=5)
    stream = c1.generate(prompt)
    got = [next(stream) for _ in range(5)]
    sid, last = stream.stream_id, stream.last_seq
    c1.close()
    with pytest.raises(braid.Unavailable):
        next(stream)
    with braid.Client(fake.address, timeout=5) as c2:
        got += list(c2.attach(sid, last))
    assert _text(got) == prompt
    assert [e.seq for e in got] == list(range(1, len(prompt) + 2))


def test_client_fake_32_streams_from_threads(fake: FakeBraidd) -> None:
    prompts = [f"stream number {i} " * 3 for i in range(32)]
    with braid.Client(fake.address, timeout=10, poll_wait=1.0) as c:
        results = run_in_threads(lambda i: list(c.generate(prompts[i])), 32)
    for i, p in enumerate(prompts):
        assert _text(results[i]) == p
        assert [e.seq for e in results[i]] == list(range(1, len(p) + 2))


def test_client_fake_32_streams_asyncio(fake: FakeBraidd) -> None:
    prompts = [f"async {i} " * 4 for i in range(32)]

    async def main() -> list:
        async with braid.AsyncClient(fake.address, timeout=10, poll_wait=1.0) as c:
            assert (await c.health()).serving

            async def one(p: str) -> list:
                return [ev async for ev in await c.generate(p)]

            outs = await asyncio.gather(*(one(p) for p in prompts))
            comp = await c.complete("done")
            assert comp.text == "done!"
            with pytest.raises(braid.ResourceExhausted):
                await c.complete("fail")
            return outs

    outs = asyncio.run(main())
    for p, evs in zip(prompts, outs):
        assert _text(evs) == p and isinstance(evs[-1], braid.FinalEvent)
