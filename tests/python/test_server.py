"""The Python client against the real braidd (CPU backend, SmolLM2-135M), started
once for this file by the `server` fixture: chunks registered and reused (the
second request reports cached prompt tokens), a streamed generation, cancel
mid-stream, 32 concurrent streams from threads and from asyncio each equal to
the same greedy request run alone, a client killed mid-stream (the server frees
its request and KV after its idle timeout), resume after a dropped connection,
and bad input answered with its status while the server keeps serving."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from typing import List

import pytest

import braid
from braid import _wire
from braid import braid_pb2 as pb
from conftest import IDLE_TIMEOUT, ROOT, Server, run_in_threads

DOC = ("The Braid Lighthouse stands on Kestrel Point. It was built in 1871 from grey granite, "
       "is 38 metres tall, and its lamp can be seen 24 nautical miles out to sea.")
GREEDY = dict(temperature=0.0, max_tokens=8)
PROMPTS = ["What is the capital of France?", "Name a colour.", "Count to five.", "Say hello.",
           "What is 2 plus 2?", "Name an animal.", "What day follows Monday?", "Spell cat."]


def _ids(events: list) -> List[int]:
    return [e.token_id for e in events if isinstance(e, braid.TokenEvent)]


def _assert_in_order(events: list) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert isinstance(events[-1], braid.FinalEvent)
    assert all(isinstance(e, braid.TokenEvent) for e in events[:-1])


def _wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def test_server_health_model_tokenize(client: braid.Client) -> None:
    h = client.health()
    assert h.serving and h.backend == "cpu" and h.version
    m = client.model_info()
    assert m.architecture == "llama" and m.vocab_size > 0 and m.max_context > 0 and len(m.fingerprint) == 64
    ids = client.tokenize("Hello world")
    assert 0 < len(ids) <= 4 and all(0 <= t < m.vocab_size for t in ids)
    assert len(client.tokenize("<|im_start|>", parse_special=True)) == 1


def test_server_register_and_reuse_chunks(client: braid.Client) -> None:
    doc = client.register_chunk(DOC, role="context")
    assert len(doc.id) == 64 and doc.num_tokens > 20 and not doc.existed
    again = client.register_chunk(DOC, role="context")
    assert again.id == doc.id and again.existed
    full = client.get_chunk(doc.id, include_tokens=True)
    assert len(full.token_ids) == doc.num_tokens and "Kestrel Point" in full.text
    assert doc.id in {c.id for c in client.list_chunks()}
    assert doc.id not in {c.id for c in client.list_chunks(namespace="someone-else")}

    q1 = client.complete([braid.Chunk(doc.id), "How tall is the lighthouse?"], **GREEDY)
    q2 = client.complete([doc, "When was it built?"], **GREEDY)
    assert q1.usage.prompt_tokens > doc.num_tokens and q1.usage.completion_tokens > 0
    assert q2.usage.cached_prompt_tokens >= doc.num_tokens - 1, (q1.usage, q2.usage)
    assert client.get_chunk(doc.id).hits >= 1

    assert client.pin_chunk(doc.id).pinned
    assert not client.pin_chunk(doc.id, pinned=False).pinned
    client.delete_chunk(doc.id)
    with pytest.raises(braid.NotFound):
        client.get_chunk(doc.id)


def test_server_register_tokens_and_retain_output(client: braid.Client) -> None:
    ids = client.tokenize("Remember: the password is swordfish.")
    chunk = client.register_chunk(tokens=ids, role="context", namespace="py-tokens")
    assert chunk.num_tokens == len(ids) and chunk.namespace == "py-tokens"
    out = client.complete([braid.Text("Answer in one word.", role="system"), "What is the password?"],
                          retain_output=True, **GREEDY)
    assert out.output_chunk_id and len(out.output_chunk_id) == 64
    kept = client.get_chunk(out.output_chunk_id, include_tokens=True)
    assert kept.role == "assistant" and kept.num_tokens >= out.usage.completion_tokens


def test_server_stream_a_generation(client: braid.Client) -> None:
    stream = client.generate("Write a long story about a dragon.", max_tokens=12, ignore_eos=True,
                             temperature=0.0, logprobs=2, client_request_id="py-stream")
    events = list(stream)
    _assert_in_order(events)
    tokens, final = events[:-1], events[-1]
    assert len(tokens) == 12 and final.finish_reason == "length"
    assert final.usage.completion_tokens == 12 and final.usage.time_to_first_token_ms > 0
    assert final.client_request_id == "py-stream"
    for t in tokens:
        assert t.logprob is not None and t.logprob <= 0 and len(t.top_logprobs) == 2
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
        assert t.token_id == t.top_logprobs[0].token_id  # greedy picks the best
    text = "".join(t.text for t in tokens) + final.text
    assert len(text) > 10


def test_server_cancel_mid_stream(client: braid.Client) -> None:
    stream = client.generate("Tell me everything about the sea.", max_tokens=400, ignore_eos=True)
    first = next(stream)
    assert isinstance(first, braid.TokenEvent)
    stream.cancel()
    rest = list(stream)
    final = rest[-1]
    assert isinstance(final, braid.FinalEvent) and final.finish_reason == "cancelled"
    assert final.usage.completion_tokens < 400
    with pytest.raises(braid.NotFound):
        client.cancel(stream.stream_id)  # finished and acknowledged: gone
    assert client.complete("Say hi.", max_tokens=2).usage.completion_tokens >= 1


@pytest.fixture(scope="module")
def alone(server: Server) -> dict:
    """Each prompt's greedy tokens when it runs alone."""
    with server.client() as c:
        return {p: c.complete(p, **GREEDY).token_ids for p in PROMPTS}


def test_server_32_concurrent_streams_threads(client: braid.Client, alone: dict) -> None:
    results = run_in_threads(lambda i: list(client.generate(PROMPTS[i % len(PROMPTS)], **GREEDY)), 32)
    for i in range(32):
        _assert_in_order(results[i])
        assert _ids(results[i]) == alone[PROMPTS[i % len(PROMPTS)]], f"stream {i}"


def test_server_32_concurrent_streams_asyncio(server: Server, alone: dict) -> None:
    async def main() -> list:
        async with braid.AsyncClient(server.address) as c:
            async def one(p: str) -> list:
                return [ev async for ev in await c.generate(p, **GREEDY)]
            return await asyncio.gather(*(one(PROMPTS[i % len(PROMPTS)]) for i in range(32)))

    outs = asyncio.run(main())
    for i, evs in enumerate(outs):
        _assert_in_order(evs)
        assert _ids(evs) == alone[PROMPTS[i % len(PROMPTS)]], f"stream {i}"


def test_server_resume_after_dropped_connection(server: Server, alone: dict) -> None:
    prompt = PROMPTS[0]
    c1 = server.client()
    stream = c1.generate(prompt, **GREEDY)
    got = [next(stream), next(stream), next(stream)]
    sid, last = stream.stream_id, stream.last_seq
    c1.close()  # the connection drops mid-stream; the server keeps the events
    with pytest.raises(braid.Unavailable):
        next(stream)
    with server.client() as c2:
        got += list(c2.attach(sid, last))
    _assert_in_order(got)
    assert _ids(got) == alone[prompt]


_KILLED_CLIENT = """
import sys, time
sys.path.insert(0, sys.argv[2])
import braid
c = braid.Client(sys.argv[1])
s = c.generate("Write a very long essay about the history of bread.", max_tokens=3000, ignore_eos=True)
next(s)
print(s.stream_id, flush=True)
time.sleep(600)
"""


def test_server_client_killed_mid_stream_frees_request(client: braid.Client) -> None:
    before = client.stats()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CLIENT, client.address, str(ROOT / "clients" / "python")],
                            stdout=subprocess.PIPE, text=True)
    try:
        sid = int(proc.stdout.readline())
        during = client.stats()
        assert during.running >= 1 and during.open_streams >= before.open_streams + 1
        assert during.kv_pages_free < before.kv_pages_free
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = time.monotonic()
    after = _wait_for(lambda: (lambda s: s if s.running == 0 and s.open_streams <= before.open_streams else None)(
        client.stats()), IDLE_TIMEOUT + 10, "the abandoned stream to be dropped")
    assert time.monotonic() - killed_at >= IDLE_TIMEOUT * 0.5  # dropped by the idle timeout, not at once
    assert after.kv_pages_free >= before.kv_pages_free, (before, after)
    assert after.generated_tokens - before.generated_tokens < 3000  # cancelled, not run to the end
    with pytest.raises(braid.NotFound):
        list(client.attach(sid, 0))


def _raw_call(client: braid.Client, method: str, payload: bytes) -> bytes:
    """Sends a hand-built payload (bypassing protobuf's own checks) and returns the raw reply."""
    call_id = 1_000_000 + len(payload)
    data = pb.RpcRequest(method=f"braid.v1.Braid/{method}", call_id=call_id, payload=payload).SerializeToString()
    return client._t.exchange(data, client.timeout, method)


def _ld(field: int, body: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2); bodies here are < 128 bytes."""
    assert len(body) < 128
    return bytes([field << 3 | 2, len(body)]) + body


BAD_UTF8 = b"caf\xc3 \xff\xfe ok"


@pytest.mark.parametrize("method,payload,reply_cls", [
    ("Generate", _ld(2, _ld(3, BAD_UTF8)) + b"\x20\x04", pb.GenerateReply),       # parts[0].text
    ("RegisterChunk", _ld(3, BAD_UTF8), pb.RegisterChunkReply),                    # text
    ("Tokenize", _ld(1, BAD_UTF8), pb.TokenizeReply),                               # text
    ("Generate", _ld(2, _ld(3, b"hi")) + _ld(5, BAD_UTF8) + b"\x20\x04", pb.GenerateReply),  # stop string
])
def test_server_invalid_utf8_is_invalid_argument(client: braid.Client, method: str, payload: bytes,
                                                 reply_cls: type) -> None:
    raw = _raw_call(client, method, payload)
    with pytest.raises(braid.InvalidArgument):
        _wire.decode_reply(raw, 1_000_000 + len(payload), reply_cls)
    assert client.health().serving


@pytest.mark.parametrize("opts", [
    {"temperature": -1.0}, {"temperature": math.nan}, {"temperature": 1e30}, {"temperature": math.inf},
    {"top_p": 1e30}, {"top_p": -0.5}, {"top_p": math.nan}, {"min_p": -1.0}, {"min_p": math.nan},
    {"repetition_penalty": -2.0}, {"repetition_penalty": 1e9}, {"presence_penalty": -1e9},
    {"frequency_penalty": math.nan}, {"logprobs": -1}, {"logprobs": 10_000},
])
def test_server_bad_sampling_is_invalid_argument(client: braid.Client, opts: dict) -> None:
    with pytest.raises(braid.InvalidArgument):
        client.complete("Hi.", max_tokens=2, **opts)


def test_server_bad_requests_keep_it_serving(client: braid.Client) -> None:
    with pytest.raises(braid.NotFound):
        client.complete([braid.Chunk("0" * 64), "Hi."], max_tokens=2)
    with pytest.raises((braid.InvalidArgument, braid.NotFound)):
        client.complete([braid.Chunk("not-a-chunk-id"), "Hi."], max_tokens=2)
    with pytest.raises(braid.NotFound):
        client.get_chunk("f" * 64)
    with pytest.raises(braid.NotFound):
        list(client.attach(987654321, 0))
    with pytest.raises(braid.InvalidArgument):
        client.complete([braid.Tokens([10**9])], max_tokens=2)  # outside the vocabulary
    with pytest.raises(braid.Unimplemented):
        client.complete("Hi.", max_tokens=2, reuse_mode="repair")
    with pytest.raises((braid.InvalidArgument, braid.OutOfRange)):
        client.complete("Hi.", max_tokens=2**32 - 1)
    raw = _raw_call(client, "NoSuchMethod", b"")
    with pytest.raises(braid.Unimplemented):
        _wire.decode_reply(raw, 1_000_000, pb.HealthReply)
    raw = _raw_call(client, "Generate", b"\x12\x05\x1a\x09tr")  # truncated protobuf
    with pytest.raises(braid.InvalidArgument):
        _wire.decode_reply(raw, 1_000_005, pb.GenerateReply)
    out = client.complete("What is the capital of France?", **GREEDY)
    assert out.usage.completion_tokens > 0 and client.health().serving
