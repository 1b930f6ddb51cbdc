"""The client's conversions, without a server: composition parts, generation
options and their validation, reply envelopes and error mapping, stream event
assembly (deduplication, gaps, final events) and completions."""

from __future__ import annotations

import math

import pytest

import braid
from braid import _wire
from braid import braid_pb2 as pb


def test_wire_plain_string_is_one_user_part() -> None:
    parts = _wire.parts_to_pb("What is 2+2?")
    assert len(parts) == 1
    assert parts[0].role == pb.ROLE_USER and parts[0].text == "What is 2+2?"


def test_wire_parts_in_order_with_roles() -> None:
    info = braid.ChunkInfo(id="b" * 64)
    parts = _wire.parts_to_pb([braid.Chunk("a" * 64), braid.Text("be brief", role="system"), info,
                               braid.Tokens([1, 2, 3]), "question"])
    kinds = [p.WhichOneof("content") for p in parts]
    assert kinds == ["chunk_id", "text", "chunk_id", "tokens", "text"]
    assert parts[0].chunk_id == "a" * 64 and parts[2].chunk_id == "b" * 64
    assert parts[1].role == pb.ROLE_SYSTEM
    assert list(parts[3].tokens.ids) == [1, 2, 3]
    assert parts[4].role == pb.ROLE_USER


def test_wire_empty_token_part_is_still_tokens() -> None:
    assert _wire.parts_to_pb([braid.Tokens([])])[0].WhichOneof("content") == "tokens"


@pytest.mark.parametrize("bad", [[], b"bytes", 42, None, [object()], [braid.Text("x", role="narrator")],
                                 [braid.Tokens([2**31])], [braid.Tokens("abc")], [braid.Tokens([1.5])]])
def test_wire_bad_parts_raise_invalid_argument(bad: object) -> None:
    with pytest.raises(braid.InvalidArgument):
        _wire.parts_to_pb(bad)


def test_wire_options_fill_sampling_with_presence() -> None:
    r = _wire.generate_request("hi", dict(max_tokens=7, temperature=0, top_k=40, top_p=0.9, min_p=0.05,
                                          repetition_penalty=1.1, presence_penalty=-0.5, frequency_penalty=0.5,
                                          seed=2**64 - 1, logprobs=3, stop=["\n\n", "END"], stop_token_ids=[2],
                                          ignore_eos=True, reuse_mode="independent", retain_output=True,
                                          deadline=1.5, client_request_id="req-1", namespace="t1"))
    s = r.sampling
    assert r.max_tokens == 7 and r.namespace == "t1"
    assert s.HasField("temperature") and s.temperature.value == 0.0  # greedy, not "unset"
    assert s.top_k == 40 and math.isclose(s.top_p.value, 0.9, rel_tol=1e-6)
    assert s.seed.value == 2**64 - 1 and s.logprobs.value == 3
    assert list(r.stop) == ["\n\n", "END"] and list(r.stop_token_ids) == [2]
    assert r.ignore_eos and r.retain_output and r.reuse_mode == pb.REUSE_INDEPENDENT
    assert r.timeout_ms == 1500 and r.client_request_id == "req-1"


def test_wire_generate_gets_its_own_request_id() -> None:
    # without one, each call carries a fresh id (braidd answers a resent call with its stream)
    a, b = (_wire.generate_request("hi", {}).client_request_id for _ in range(2))
    assert a.startswith("py-") and len(a) == 19 and a != b


def test_wire_unset_options_stay_unset() -> None:
    s = _wire.generate_request("hi", {"temperature": None}).sampling
    assert not s.HasField("temperature") and not s.HasField("seed") and not s.HasField("logprobs")


def test_wire_logprobs_true_asks_for_the_chosen_token_only() -> None:
    assert _wire.generate_request("hi", {"logprobs": True}).sampling.HasField("logprobs")
    assert not _wire.generate_request("hi", {"logprobs": False}).sampling.HasField("logprobs")


def test_wire_single_stop_string() -> None:
    assert list(_wire.generate_request("hi", {"stop": "\n"}).stop) == ["\n"]


@pytest.mark.parametrize("opts", [{"max_tokens": -1}, {"max_tokens": 2**32}, {"seed": -1}, {"seed": 2**64},
                                  {"temperature": "hot"}, {"top_k": 1.5}, {"top_k": True}, {"stop": [1]},
                                  {"reuse_mode": "sometimes"}, {"reuse_mode": 9}, {"deadline": 0},
                                  {"deadline": float("nan")}, {"namespace": 3}])
def test_wire_unrepresentable_options_raise_invalid_argument(opts: dict) -> None:
    with pytest.raises(braid.InvalidArgument):
        _wire.generate_request("hi", opts)


def test_wire_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_token"):
        _wire.generate_request("hi", {"max_token": 3})


def test_wire_out_of_range_but_representable_values_go_to_the_server() -> None:
    # NaN, negative or huge values are the server's to refuse (one place knows the limits).
    s = _wire.generate_request("hi", {"temperature": float("nan"), "top_p": 1e30, "top_k": -5,
                                      "repetition_penalty": -1.0}).sampling
    assert math.isnan(s.temperature.value) and s.top_p.value > 1e29


def test_wire_register_needs_exactly_one_content() -> None:
    with pytest.raises(braid.InvalidArgument):
        _wire.register_request(None, None, "context", "", False, False)
    with pytest.raises(braid.InvalidArgument):
        _wire.register_request("a", [1], "context", "", False, False)
    r = _wire.register_request(None, [5, 6], "system", "ns", True, True)
    assert list(r.tokens.ids) == [5, 6] and r.role == pb.ROLE_SYSTEM and r.pin and r.precompute


def test_wire_envelope_round_trip_and_timeout() -> None:
    data = _wire.encode_call("Health", pb.HealthRequest(), 42, 1.25)
    env = pb.RpcRequest.FromString(data)
    assert env.method == "braid.v1.Braid/Health" and env.call_id == 42 and env.timeout_ms == 1250
    rep = pb.RpcReply(call_id=42, payload=pb.HealthReply(version="9").SerializeToString())
    assert _wire.decode_reply(rep.SerializeToString(), 42, pb.HealthReply).version == "9"


@pytest.mark.parametrize("code,cls", [(pb.NOT_FOUND, braid.NotFound), (pb.INVALID_ARGUMENT, braid.InvalidArgument),
                                      (pb.RESOURCE_EXHAUSTED, braid.ResourceExhausted),
                                      (pb.CANCELLED, braid.Cancelled), (pb.DEADLINE_EXCEEDED, braid.DeadlineExceeded),
                                      (pb.UNAVAILABLE, braid.Unavailable), (pb.INTERNAL, braid.Internal),
                                      (pb.UNIMPLEMENTED, braid.Unimplemented),
                                      (pb.UNAUTHENTICATED, braid.Unauthenticated),
                                      (pb.PERMISSION_DENIED, braid.PermissionDenied),
                                      (pb.DATA_LOSS, braid.DataLoss), (pb.OUT_OF_RANGE, braid.OutOfRange)])
def test_wire_reply_status_raises_its_class(code: int, cls: type) -> None:
    rep = pb.RpcReply(call_id=1, status=pb.Status(code=code, message="why"))
    with pytest.raises(cls) as ei:
        _wire.decode_reply(rep.SerializeToString(), 1, pb.HealthReply)
    assert ei.value.code == code and ei.value.message == "why"
    assert isinstance(ei.value, braid.BraidError) and pb.Code.Name(code) in str(ei.value)


def test_wire_every_code_but_ok_has_a_class() -> None:
    for code in pb.Code.values():
        if code != pb.OK:
            err = braid.error_for(code, "m")
            assert type(err) is not braid.BraidError and err.code == code
    unknown = braid.error_for(99, "new")
    assert type(unknown) is braid.BraidError and unknown.code == 99


def test_wire_garbage_and_misdirected_replies_are_internal() -> None:
    with pytest.raises(braid.Internal):
        _wire.decode_reply(b"\xff\xff\xff", 1, pb.HealthReply)
    with pytest.raises(braid.Internal):
        _wire.decode_reply(pb.RpcReply(call_id=2).SerializeToString(), 1, pb.HealthReply)


def _token(seq: int, tid: int, text: str) -> pb.StreamEvent:
    ev = pb.StreamEvent(seq=seq)
    ev.token.token_id = tid
    ev.token.text = text
    return ev


def _final(seq: int, reason: int = pb.FINISH_REASON_STOP, code: int = pb.OK, text: str = "") -> pb.StreamEvent:
    ev = pb.StreamEvent(seq=seq)
    ev.final.finish_reason = reason
    ev.final.status.code = code
    ev.final.text = text
    ev.final.usage.prompt_tokens = 10
    ev.final.usage.cached_prompt_tokens = 8
    return ev


def test_wire_cursor_drops_replays_and_acks_what_it_holds() -> None:
    c = _wire.StreamCursor(7)
    assert c.next_request(1.0).ack_seq == 0
    got = c.feed(pb.StreamNextReply(events=[_token(1, 11, "a"), _token(2, 12, "b")]))
    assert [e.token_id for e in got] == [11, 12] and c.last_seq == 2
    # The same reply again (a retried poll) and an overlapping one: only the new event.
    assert c.feed(pb.StreamNextReply(events=[_token(1, 11, "a"), _token(2, 12, "b")])) == []
    got = c.feed(pb.StreamNextReply(events=[_token(2, 12, "b"), _token(3, 13, "c")]))
    assert [e.seq for e in got] == [3]
    req = c.next_request(2.5)
    assert req.stream_id == 7 and req.ack_seq == 3 and req.max_wait_ms == 2500


def test_wire_cursor_refuses_a_gap() -> None:
    c = _wire.StreamCursor(7, last_seq=4)
    with pytest.raises(braid.DataLoss):
        c.feed(pb.StreamNextReply(events=[_token(6, 1, "x")]))


def test_wire_cursor_stops_at_the_final_event() -> None:
    c = _wire.StreamCursor(1)
    got = c.feed(pb.StreamNextReply(events=[_token(1, 5, "x"), _final(2), _token(3, 6, "late")]))
    assert len(got) == 2 and isinstance(got[1], braid.FinalEvent) and c.done
    assert got[1].finish_reason == "stop" and got[1].usage.cached_prompt_tokens == 8


def test_wire_final_errors() -> None:
    ev = _wire.event(_final(3, pb.FINISH_REASON_ERROR, pb.DEADLINE_EXCEEDED))
    assert isinstance(_wire.final_error(ev), braid.DeadlineExceeded)
    ev = _wire.event(_final(3, pb.FINISH_REASON_ERROR, pb.OK))  # error without a code
    assert isinstance(_wire.final_error(ev), braid.Unknown)
    assert _wire.final_error(_wire.event(_final(3, pb.FINISH_REASON_CANCELLED, pb.CANCELLED))) is None
    assert _wire.final_error(_wire.event(_final(3))) is None


def test_wire_logprobs_in_token_events() -> None:
    m = _token(1, 5, "x")
    m.token.logprob.token_id = 5
    m.token.logprob.logprob = -0.25
    m.token.top_logprobs.add(token_id=5, logprob=-0.25, text="x")
    m.token.top_logprobs.add(token_id=6, logprob=-2.0, text="y")
    ev = _wire.event(m)
    assert ev.logprob == -0.25 and [t.token_id for t in ev.top_logprobs] == [5, 6]
    assert _wire.event(_token(1, 5, "x")).logprob is None


def test_wire_completion_appends_held_back_text() -> None:
    b = _wire.CompletionBuilder(9)
    for m in (_token(1, 1, "Hel"), _token(2, 2, ""), _token(3, 3, "lo")):
        assert b.add(_wire.event(m)) is None
    done = b.add(_wire.event(_final(4, text=" wor")))
    assert done.text == "Hello wor" and done.token_ids == [1, 2, 3] and done.stream_id == 9
    assert done.finish_reason == "stop" and done.usage.prompt_tokens == 10


def test_wire_reply_conversions() -> None:
    info = _wire.chunk_info(pb.ChunkInfo(id="c" * 64, role=pb.ROLE_SYSTEM, num_tokens=12, hits=3), existed=True)
    assert info.role == "system" and info.num_tokens == 12 and info.existed and info.token_ids is None
    full = _wire.chunk_content(pb.GetChunkReply(chunk=pb.ChunkInfo(id="c" * 64), token_ids=[1, 2], text="ab"), True)
    assert full.token_ids == [1, 2] and full.text == "ab"
    st = _wire.stats(pb.StatsReply(kv_pages_total=10, kv_pages_free=4, cached_prompt_tokens=99))
    assert st.kv_pages_free == 4 and st.cached_prompt_tokens == 99
    h = _wire.health(pb.HealthReply(serving_status=pb.HealthReply.SERVING, version="0.1.0"))
    assert h.serving and h.status == "SERVING"
    assert _wire.model_info(pb.ModelInfoReply(name="m", bos_token_id=-1)).bos_token_id == -1
