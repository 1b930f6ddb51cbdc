"""bench_rpc.py - braidd's RPC overhead and how many idle streams it holds.

Measures, on loopback against a real braidd (CPU):
  1. unary calls: Health round trips per second, one REQ socket, sequential,
     and 8 contexts of one socket in parallel;
  2. streamed tokens: StreamNext cost per event with the events already
     buffered (a finished generation polled again and again without acking:
     one poll returning all events, and one poll per event), so the engine's
     speed does not enter;
  3. idle streams: N finished but never drained streams (max_tokens 1 on a
     dummy smollm2-135m model) and braidd's resident memory before and after.
Prints a table and writes tests/bench/results/bench_rpc.json.

Usage: .venv/bin/python tests/bench/bench_rpc.py BRAIDD PYPROTO_DIR [N_IDLE]
  (PYPROTO_DIR holds braid_pb2.py: build-*/tests/service/pyproto)
"""
import json
import os
import platform
import sys
import threading
import time

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ["BRAID_PYPROTO"] = sys.argv[2]
sys.path.insert(0, os.path.join(root, "tests", "integration"))
from svc_rpc import Conn, Server, pb, stream_all  # noqa: E402

braidd = sys.argv[1]
n_idle = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
smollm2 = os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


res = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} "
                  f"{platform.release()}"}

# 1. unary calls
srv = Server(braidd, "--dummy", "smollm2-135m", "--threads", "2", "--log-level", "warn")
try:
    c = Conn(srv.addr)
    for _ in range(200):
        c.ok("Health", pb.HealthRequest())
    n = 5000
    t0 = time.perf_counter()
    for _ in range(n):
        c.ok("Health", pb.HealthRequest())
    dt = time.perf_counter() - t0
    res["health_seq_us"] = dt / n * 1e6
    res["health_seq_per_s"] = n / dt

    def worker(k):
        ctx = c.context()
        for _ in range(k):
            ctx.ok("Health", pb.HealthRequest())

    ths = [threading.Thread(target=worker, args=(n // 8,)) for _ in range(8)]
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    res["health_8ctx_per_s"] = (n // 8 * 8) / (time.perf_counter() - t0)

    # 3. idle streams on the dummy model (token ids: it has no tokenizer)
    stats = c.ok("Stats", pb.StatsRequest())
    srv.stop()
    srv = Server(braidd, "--dummy", "smollm2-135m", "--threads", "2", "--log-level", "warn",
                 "--max-streams", str(n_idle + 10), "--max-queued", str(n_idle + 10),
                 "--stream-idle-timeout", "3600")
    c = Conn(srv.addr)
    req = pb.GenerateRequest(parts=[pb.Part(tokens=pb.TokenIds(ids=[1, 5, 6, 7]))],
                             max_tokens=1, no_generation_prompt=True)
    c.ok("Generate", req)  # warm-up: the engine's first step allocates its buffers
    time.sleep(0.5)
    rss0 = rss_kib(srv.proc.pid)
    t0 = time.perf_counter()
    for _ in range(n_idle):
        c.ok("Generate", req)
    res["generate_us"] = (time.perf_counter() - t0) / n_idle * 1e6
    while c.ok("Stats", pb.StatsRequest()).generations < n_idle + 1:
        time.sleep(0.1)
    rss1 = rss_kib(srv.proc.pid)
    st = c.ok("Stats", pb.StatsRequest())
    res["idle_streams"] = st.open_streams
    res["idle_stream_bytes"] = (rss1 - rss0) * 1024 / n_idle
    srv.stop()
finally:
    srv.kill()

# 2. streamed tokens: buffered events, polled repeatedly (SmolLM2 makes real text)
if os.path.exists(smollm2):
    srv = Server(braidd, "--model", smollm2, "--threads", "2", "--log-level", "warn")
    try:
        c = Conn(srv.addr)
        sid = c.ok("Generate", pb.GenerateRequest(parts=[pb.Part(text="Tell me a story.")],
                                                  max_tokens=128, ignore_eos=True)).stream_id
        while c.ok("Stats", pb.StatsRequest()).generations < 1:
            time.sleep(0.2)
        n_ev = len(c.ok("StreamNext", pb.StreamNextRequest(stream_id=sid)).events)
        reps = 300
        t0 = time.perf_counter()
        for _ in range(reps):
            c.ok("StreamNext", pb.StreamNextRequest(stream_id=sid))
        dt = time.perf_counter() - t0
        res["stream_events"] = n_ev
        res["stream_batch_us_per_event"] = dt / reps / n_ev * 1e6
        t0 = time.perf_counter()
        for _ in range(reps):
            for a in range(n_ev):  # one event per poll, as a client that keeps up would see
                c.ok("StreamNext", pb.StreamNextRequest(stream_id=sid, ack_seq=0, max_events=1))
        dt = time.perf_counter() - t0
        res["stream_single_us_per_event"] = dt / reps / n_ev * 1e6
        stream_all(c, sid)
        srv.stop()
    finally:
        srv.kill()

print(f"\nbraidd RPC benchmark on {res['machine']} (loopback tcp, Python pynng client)\n")
rows = [
    ("Health, sequential round trip", f"{res['health_seq_us']:.0f} us",
     f"{res['health_seq_per_s']:.0f} calls/s"),
    ("Health, 8 contexts on one socket", "", f"{res['health_8ctx_per_s']:.0f} calls/s"),
    ("Generate (max_tokens 1, dummy model)", f"{res['generate_us']:.0f} us", "per call"),
]
if "stream_events" in res:
    rows += [
        (f"StreamNext, {res['stream_events']} buffered events per poll",
         f"{res['stream_batch_us_per_event']:.1f} us", "per event"),
        ("StreamNext, one event per poll", f"{res['stream_single_us_per_event']:.0f} us",
         "per event"),
    ]
rows += [(f"idle undrained streams held", f"{res['idle_streams']}", ""),
         ("memory per idle stream (RSS delta)", f"{res['idle_stream_bytes']:.0f} B", "")]
for name, a, b in rows:
    print(f"  {name:<44} {a:>10}  {b}")
os.makedirs(os.path.join(root, "tests", "bench", "results"), exist_ok=True)
with open(os.path.join(root, "tests", "bench", "results", "bench_rpc.json"), "w") as f:
    json.dump(res, f, indent=1)
