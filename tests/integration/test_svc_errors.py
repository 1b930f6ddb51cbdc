"""Integration: braidd answers bad input with the right status and keeps serving.

Raw pynng REQ sockets send random bytes, truncated protobuf, unknown methods,
oversized messages, unknown and malformed chunk ids, negative/NaN/huge sampling
values, invalid UTF-8 text, and out-of-range fields; after each, Health must
still answer SERVING. Usage: test_svc_errors.py BRAIDD MODEL
"""
import random
import sys

from svc_rpc import Conn, Server, corrupt, main_guard, pb

braidd, model = sys.argv[1], sys.argv[2]
main_guard(model)
srv = Server(braidd, "--model", model, "--threads", "2", "--kv-tokens", "2048",
             "--max-message", "65536")
c = Conn(srv.addr)
checked = 0


def healthy():
    h = c.ok("Health", pb.HealthRequest())
    assert h.serving_status == pb.HealthReply.SERVING


def expect(got, code, needle=None, what=""):
    global checked
    gcode, msg = got[0], got[1]
    assert gcode == code, f"{what}: got {pb.Code.Name(gcode)} ({msg}), want {pb.Code.Name(code)}"
    if needle:
        assert needle in msg, f"{what}: '{needle}' not in '{msg}'"
    healthy()
    checked += 1
    print(f"ok  {what}: {pb.Code.Name(code)}: {msg}")


def gen(**kw):
    kw.setdefault("parts", [pb.Part(text="Hi")])
    kw.setdefault("max_tokens", 2)
    return pb.GenerateRequest(**kw)


try:
    healthy()
    # Random bytes: either not an envelope at all or an envelope of no known method.
    rng = random.Random(4)
    for i in range(20):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        rep = c.raw(data)
        assert rep.status.code in (pb.INVALID_ARGUMENT, pb.UNIMPLEMENTED), rep
        healthy()
    checked += 1
    print("ok  20 random messages")

    # Truncated protobuf: the envelope, then a good envelope around a truncated payload.
    env = pb.RpcRequest(method="braid.v1.Braid/Generate", call_id=7,
                        payload=gen().SerializeToString()).SerializeToString()
    rep = c.raw(env[: len(env) // 2])
    expect((rep.status.code, rep.status.message), pb.INVALID_ARGUMENT, "RpcRequest",
           "truncated envelope")
    payload = gen(parts=[pb.Part(text="a longer prompt text")]).SerializeToString()
    env = pb.RpcRequest(method="braid.v1.Braid/Generate", call_id=8, payload=payload[:-5])
    rep = c.raw(env.SerializeToString())
    assert rep.call_id == 8
    expect((rep.status.code, rep.status.message), pb.INVALID_ARGUMENT, "GenerateRequest",
           "truncated payload")

    expect(c.call("NoSuchMethod", pb.HealthRequest()), pb.UNIMPLEMENTED, "NoSuchMethod",
           "unknown method")
    # A method name that is not UTF-8: the reply's message must still be valid UTF-8
    # (the Python runtime refuses to parse it otherwise).
    env = pb.RpcRequest(method="braid.v1.Braid/PLACEHOLDER", call_id=9).SerializeToString()
    rep = c.raw(corrupt(env, b"PLACEHOLDER", b"\xff\xfe\xc0"))
    expect((rep.status.code, rep.status.message), pb.UNIMPLEMENTED, "\ufffd",
           "non-UTF-8 method name")

    big = pb.TokenizeRequest(text="a" * 100000)
    expect(c.call("Tokenize", big), pb.RESOURCE_EXHAUSTED, "--max-message", "oversized")

    unknown = "ab" * 32
    expect(c.call("GetChunk", pb.GetChunkRequest(id=unknown)), pb.NOT_FOUND, unknown,
           "GetChunk unknown id")
    expect(c.call("Generate", gen(parts=[pb.Part(chunk_id=unknown), pb.Part(text="q")])),
           pb.NOT_FOUND, None, "Generate unknown chunk")
    expect(c.call("DeleteChunk", pb.DeleteChunkRequest(id=unknown)), pb.NOT_FOUND, None,
           "DeleteChunk unknown id")
    expect(c.call("PinChunk", pb.PinChunkRequest(id="XYZ")), pb.INVALID_ARGUMENT, "hex",
           "PinChunk malformed id")
    expect(c.call("Generate", gen(parts=[pb.Part(chunk_id="AB" * 32), pb.Part(text="q")])),
           pb.INVALID_ARGUMENT, "parts[0].chunk_id", "upper-case chunk id")

    F = pb.FloatValue
    for field, sp in [
        ("temperature", pb.SamplingParams(temperature=F(value=-1))),
        ("temperature", pb.SamplingParams(temperature=F(value=float("nan")))),
        ("temperature", pb.SamplingParams(temperature=F(value=1e30))),
        ("top_p", pb.SamplingParams(top_p=F(value=0))),
        ("top_p", pb.SamplingParams(top_p=F(value=float("nan")))),
        ("min_p", pb.SamplingParams(min_p=-0.1)),
        ("repetition_penalty", pb.SamplingParams(repetition_penalty=F(value=0))),
        ("presence_penalty", pb.SamplingParams(presence_penalty=float("inf"))),
        ("frequency_penalty", pb.SamplingParams(frequency_penalty=-1e9)),
        ("logprobs", pb.SamplingParams(logprobs=pb.Int32Value(value=50))),
    ]:
        expect(c.call("Generate", gen(sampling=sp)), pb.INVALID_ARGUMENT, field,
               f"sampling {field}")

    expect(c.call("Generate", gen(max_tokens=10**9)), pb.INVALID_ARGUMENT, "max_tokens",
           "huge max_tokens")
    expect(c.call("Generate", gen(parts=[])), pb.INVALID_ARGUMENT, "parts", "no parts")
    expect(c.call("Generate", gen(parts=[pb.Part(role=99, text="x")])), pb.INVALID_ARGUMENT,
           "role", "role out of range")
    expect(c.call("Generate", gen(reuse_mode=pb.REUSE_REPAIR)), pb.UNIMPLEMENTED, "REPAIR",
           "REUSE_REPAIR")
    expect(c.call("Generate", gen(parts=[pb.Part(tokens=pb.TokenIds(ids=[1, 10**8]))])),
           pb.INVALID_ARGUMENT, "vocabulary", "token id outside the vocabulary")
    expect(c.call("RegisterChunk", pb.RegisterChunkRequest(**{"namespace": "n" * 64, "text": "x"})),
           pb.INVALID_ARGUMENT, "namespace", "namespace too long")

    # Invalid UTF-8 in text fields of several requests.
    bad = b"\xc3\x28\xa0\xa1\xed\xa0\x80"
    for method, req, field in [
        ("Generate", gen(parts=[pb.Part(text="PLACEHOLDER")]), "parts[0].text"),
        ("Generate", gen(stop=["PLACEHOLDER"]), "stop[0]"),
        ("RegisterChunk", pb.RegisterChunkRequest(text="PLACEHOLDER"), "text"),
        ("RegisterChunk", pb.RegisterChunkRequest(**{"namespace": "PLACEHOLDER", "text": "x"}),
         "namespace"),
        ("Tokenize", pb.TokenizeRequest(text="PLACEHOLDER"), "text"),
    ]:
        payload = corrupt(req.SerializeToString(), b"PLACEHOLDER", bad)
        env = pb.RpcRequest(method="braid.v1.Braid/" + method, call_id=11, payload=payload)
        rep = c.raw(env.SerializeToString())
        expect((rep.status.code, rep.status.message), pb.INVALID_ARGUMENT, field + " is not valid UTF-8",
               f"{method} invalid UTF-8 in {field}")

    expect(c.call("StreamNext", pb.StreamNextRequest(stream_id=12345)), pb.NOT_FOUND, "stream",
           "StreamNext unknown stream")
    expect(c.call("Cancel", pb.CancelRequest(stream_id=12345)), pb.NOT_FOUND, "stream",
           "Cancel unknown stream")

    # The server still does real work after all that.
    t = c.ok("Tokenize", pb.TokenizeRequest(text="Hello world"))
    assert len(t.token_ids) == 2, t
    srv_stats = c.ok("Stats", pb.StatsRequest())
    assert srv_stats.open_streams == 0 and srv_stats.generations == 0, srv_stats
    c.close()
    srv.stop()
    print(f"PASS integration.svc_errors ({checked} checks)")
except BaseException:
    srv.kill()
    print(srv.text()[-4000:])
    raise
