"""Integration: braidd's streams over raw sockets.

A generation streamed with StreamNext has contiguous seq numbers; a poll
repeated with an old ack_seq (from another connection) returns the same events
(resume); the final event stays until acknowledged, then the stream is gone;
a Generate repeated with the same client_request_id and bytes answers the
same stream; Cancel ends a stream with CANCELLED; a deadline ends one with DEADLINE_EXCEEDED;
--max-streams is answered with RESOURCE_EXHAUSTED; concurrent streams on one
connection each get every token in order; a stream nobody polls is cancelled
after --stream-idle-timeout and its KV pages return.
Usage: test_svc_streams.py BRAIDD MODEL
"""
import sys
import threading
import time

from svc_rpc import GREEDY, Conn, Server, main_guard, pb, poll_some, stream_all

braidd, model = sys.argv[1], sys.argv[2]
main_guard(model)
srv = Server(braidd, "--model", model, "--threads", "2", "--kv-tokens", "2048",
             "--max-streams", "6", "--stream-idle-timeout", "3")


def gen(conn, text="What is the capital of France?", **kw):
    kw.setdefault("max_tokens", 8)
    kw.setdefault("sampling", GREEDY)
    return conn.ok("Generate", pb.GenerateRequest(parts=[pb.Part(text=text)], **kw)).stream_id


def check_contiguous(events):
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert events[-1].HasField("final") and all(e.HasField("token") for e in events[:-1])


try:
    c = Conn(srv.addr)
    free0 = c.ok("Stats", pb.StatsRequest()).kv_pages_free

    # One event per poll (max_events=1): contiguous seqs, usage counts every token.
    sid = gen(c, client_request_id="req-1")
    events, ack = [], 0
    while not events or not events[-1].HasField("final"):
        r = c.ok("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=ack, max_events=1))
        assert len(r.events) <= 1
        events += r.events
        ack = events[-1].seq if events else 0
    check_contiguous(events)
    fin = events[-1].final
    assert fin.usage.completion_tokens == len(events) - 1, fin
    assert fin.client_request_id == "req-1"
    text = "".join(e.token.text for e in events[:-1]) + fin.text
    assert "Paris" in text, text
    print(f"ok  streamed {len(events)} events: {text!r}")

    # The final event stays until acknowledged; acknowledging it ends the stream.
    again = c.ok("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=ack - 1))
    assert [e.seq for e in again.events] == [ack]
    c.ok("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=ack))
    code, msg, _ = c.call("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=ack))
    assert code == pb.NOT_FOUND, msg
    print("ok  final event kept until acknowledged, then NOT_FOUND")

    # A Generate repeated with the same client_request_id and bytes (what nng
    # resends when a dropped connection lost the reply) answers the same
    # stream; the same id with another request gets its own.
    gens0 = c.ok("Stats", pb.StatsRequest()).generations
    a = gen(c, client_request_id="retry-1", ignore_eos=True)
    b = gen(c, client_request_id="retry-1", ignore_eos=True)
    assert a == b, (a, b)
    assert len(stream_all(c, a)) == 9
    deadline = time.time() + 30
    while time.time() < deadline:
        st = c.ok("Stats", pb.StatsRequest())
        if st.running == 0 and st.queued == 0:
            break
        time.sleep(0.05)
    assert st.generations == gens0 + 1, (st.generations, gens0)
    a = gen(c, client_request_id="retry-2", ignore_eos=True)
    d = gen(c, client_request_id="retry-2", ignore_eos=True, max_tokens=4)
    assert d != a, (a, d)
    for sid in (a, d):  # cancelled and drained (or already dropped by the idle sweep)
        code, msg, _ = c.call("Cancel", pb.CancelRequest(stream_id=sid))
        ack = 0
        while code == pb.OK:
            code, msg, r = c.call("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=ack,
                                                                      max_wait_ms=2000))
            if code == pb.OK and r.events:
                ack = r.events[-1].seq
                if r.events[-1].HasField("final"):
                    c.call("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=ack))
                    break
        assert code in (pb.OK, pb.NOT_FOUND), msg
    print("ok  a repeated Generate answers its open stream; one generation ran")

    # Resume: the same poll repeated from a new connection returns the same events.
    sid = gen(c)
    while True:
        r = c.ok("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=0, max_wait_ms=5000))
        if r.events and r.events[-1].HasField("final"):
            break
        time.sleep(0.05)
    c2 = Conn(srv.addr)
    r2 = c2.ok("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=0))
    assert r2 == r, "a repeated poll must return the same events"
    r3 = c2.ok("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=3))
    assert [e.seq for e in r3.events] == [e.seq for e in r.events[3:]]
    assert r3.events[0].token == r.events[3].token
    c2.ok("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=r.events[-1].seq))
    c2.close()
    print(f"ok  resume from another connection: {len(r.events)} events again")

    # Cancel mid-stream.
    sid = gen(c, max_tokens=1000, ignore_eos=True)
    r = poll_some(c, sid)
    c.ok("Cancel", pb.CancelRequest(stream_id=sid))
    events = stream_all(c, sid)
    fin = events[-1].final
    assert fin.finish_reason == pb.FINISH_REASON_CANCELLED, fin
    assert fin.status.code == pb.CANCELLED, fin
    print(f"ok  cancelled after {fin.usage.completion_tokens} tokens")

    # A deadline ends the generation with DEADLINE_EXCEEDED.
    sid = gen(c, max_tokens=1000, ignore_eos=True, timeout_ms=300)
    fin = stream_all(c, sid)[-1].final
    assert fin.finish_reason == pb.FINISH_REASON_ERROR, fin
    assert fin.status.code == pb.DEADLINE_EXCEEDED, fin
    print(f"ok  deadline after {fin.usage.completion_tokens} tokens")

    # Six concurrent streams on one connection (one nng context each): each
    # gets every token in order.
    results = {}

    def run(i):
        ctx = c.context()
        sid = gen(ctx, text=f"Count to {i + 3}.", max_tokens=6)
        results[i] = stream_all(ctx, sid)
        ctx.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 6, results.keys()
    for ev in results.values():
        check_contiguous(ev)
    print("ok  6 concurrent streams on one connection, every seq in order")

    # --max-streams 6: undrained finished streams count until acknowledged.
    # They are drained concurrently, so that none sits unpolled past the idle
    # timeout on a loaded machine.
    def drain(sids):
        ts = [threading.Thread(target=lambda s=s: stream_all(c.context(), s)) for s in sids]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)

    sids = [gen(c, max_tokens=2) for _ in range(6)]
    code, msg, _ = c.call("Generate", pb.GenerateRequest(parts=[pb.Part(text="x")]))
    assert code == pb.RESOURCE_EXHAUSTED and "--max-streams" in msg, msg
    drain(sids[:1])
    sids[0] = gen(c, max_tokens=2)
    drain(sids)
    assert c.ok("Stats", pb.StatsRequest()).open_streams == 0
    print("ok  --max-streams answered RESOURCE_EXHAUSTED")

    # Idle timeout: an unpolled long generation is cancelled and its KV freed.
    assert c.ok("Stats", pb.StatsRequest()).open_streams == 0
    sid = gen(c, max_tokens=1500, ignore_eos=True)
    time.sleep(0.5)
    busy = c.ok("Stats", pb.StatsRequest())
    assert busy.open_streams == 1 and busy.kv_pages_free < free0, busy
    deadline = time.time() + 10
    while time.time() < deadline:
        st = c.ok("Stats", pb.StatsRequest())
        if st.open_streams == 0:
            break
        time.sleep(0.2)
    assert st.open_streams == 0 and st.kv_pages_free == free0, (st, free0)
    code, _, _ = c.call("StreamNext", pb.StreamNextRequest(stream_id=sid))
    assert code == pb.NOT_FOUND
    assert "nobody polled it" in srv.text()
    print(f"ok  idle stream cancelled, KV pages back ({st.kv_pages_free} free)")

    c.close()
    srv.stop()
    print("PASS integration.svc_streams")
except BaseException:
    srv.kill()
    print(srv.text()[-4000:])
    raise
