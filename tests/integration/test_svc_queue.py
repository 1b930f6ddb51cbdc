"""Integration: braidd's --max-queued limit.

A generation waits in the engine's queue from Generate until the worker admits
it at the start of its next forward step. With --max-queued 1 and a long
prompt prefilled in one step (--max-batch-tokens above its length, so that
the step lasts), a burst of Generate calls sent while that step runs finds
the first of them queued and every later one answered RESOURCE_EXHAUSTED with
a message naming --max-queued, without opening a stream. Once the step ends
the queued generation is admitted and runs, and Generate succeeds again.
Usage: test_svc_queue.py BRAIDD MODEL
"""
import sys
import time

from svc_rpc import GREEDY, Conn, Server, main_guard, pb, stream_all

braidd, model = sys.argv[1], sys.argv[2]
main_guard(model)
# The queued stream is only polled after the long one is drained; on a loaded
# machine that can take longer than the default 30 s idle timeout.
srv = Server(braidd, "--model", model, "--threads", "2", "--kv-tokens", "4096",
             "--max-batch-tokens", "1024", "--max-queued", "1", "--stream-idle-timeout", "600")
LONG = " ".join(f"Crate {i} holds {i * 7 % 13} red apples and {i * 5 % 11} green pears."
                for i in range(16))


def generate(conn, text, max_tokens=2):
    return conn.call("Generate", pb.GenerateRequest(parts=[pb.Part(text=text)], sampling=GREEDY,
                                                    max_tokens=max_tokens, ignore_eos=True))


def finished(conn, sid, n_tokens):
    fin = stream_all(conn, sid)[-1].final
    assert fin.finish_reason == pb.FINISH_REASON_LENGTH, fin
    assert fin.usage.completion_tokens == n_tokens, fin


try:
    c = Conn(srv.addr)
    # Warm-up: the implicit BOS chunk's KV is computed once, so that the long
    # prompt below is admitted straight into its one prefill step.
    code, msg, r = generate(c, "Hi")
    assert code == pb.OK, msg
    finished(c, r.stream_id, 2)
    n_long = len(c.ok("Tokenize", pb.TokenizeRequest(text=LONG)).token_ids)

    code, msg, r = generate(c, LONG)
    assert code == pb.OK, msg
    long_sid = r.stream_id
    deadline = time.time() + 30
    while (before := c.ok("Stats", pb.StatsRequest())).running == 0:  # admitted: its step runs
        assert time.time() < deadline, "the long generation was never admitted"

    t0 = time.time()
    burst = [generate(c, f"Say {i}.") for i in range(6)]
    burst_ms = (time.time() - t0) * 1000
    after = c.ok("Stats", pb.StatsRequest())
    accepted = [r.stream_id for code, _, r in burst if code == pb.OK]
    refused = [(code, msg) for code, msg, _ in burst if code != pb.OK]
    for code, msg in refused:
        assert code == pb.RESOURCE_EXHAUSTED and "--max-queued" in msg, (code, msg)
    assert accepted and refused, burst
    if after.steps == before.steps:  # the prefill step outlasted the burst
        assert len(accepted) == 1 and after.queued == 1 and after.open_streams == 2, after
    else:
        print(f"note: the {n_long}-token prefill step ended within the {burst_ms:.1f} ms burst")
    print(f"ok  {len(accepted)} queued, {len(refused)} refused during a {n_long}-token prefill "
          f"(burst {burst_ms:.1f} ms): {refused[0][1]!r}")

    # Recovery: the queued generations run, nothing of the refused ones stays,
    # and later calls are served.
    finished(c, long_sid, 2)
    for sid in accepted:
        finished(c, sid, 2)
    st = c.ok("Stats", pb.StatsRequest())
    assert st.queued == 0 and st.running == 0 and st.open_streams == 0, st
    for i in range(2):
        code, msg, r = generate(c, f"Count to {i + 2}.", max_tokens=3)
        assert code == pb.OK, msg
        finished(c, r.stream_id, 3)
    print("ok  queued generations ran; Generate served again after the burst")

    c.close()
    srv.stop()
    print("PASS integration.svc_queue")
except BaseException:
    srv.kill()
    print(srv.text()[-4000:])
    raise
