"""svc_rpc.py - a raw RPC helper for braidd's integration tests and benchmark.

Speaks the wire contract (proto/braid.proto) directly over a pynng REQ socket,
without the client libraries, so that the tests can also send what a client
library never would (random bytes, truncated envelopes, unknown methods).
braid_pb2 is generated into the build tree by protoc; its folder comes in
BRAID_PYPROTO (or sys.path).
"""
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.environ.get("BRAID_PYPROTO", "."))
import braid_pb2 as pb  # noqa: E402
import pynng  # noqa: E402

PREFIX = "braid.v1.Braid/"
GREEDY = pb.SamplingParams(temperature=pb.FloatValue(value=0))  # deterministic output
REPLY = {
    "Health": pb.HealthReply, "RegisterChunk": pb.RegisterChunkReply,
    "GetChunk": pb.GetChunkReply, "ListChunks": pb.ListChunksReply,
    "DeleteChunk": pb.DeleteChunkReply, "PinChunk": pb.PinChunkReply,
    "Generate": pb.GenerateReply, "StreamNext": pb.StreamNextReply,
    "Cancel": pb.CancelReply, "Tokenize": pb.TokenizeReply, "Stats": pb.StatsReply,
    "ModelInfo": pb.ModelInfoReply,
}


class Conn:
    """One REQ socket; call() is one RPC on it (one at a time)."""

    def __init__(self, addr, timeout_ms=20000, block=False):
        self.sock = pynng.Req0(recv_timeout=timeout_ms, send_timeout=timeout_ms)
        self.sock.dial(addr, block=block)
        self.next_id = 1

    def context(self):
        """Another Conn on a new nng context of this socket: concurrent calls on one
        connection."""
        c = Conn.__new__(Conn)
        c.sock = self.sock.new_context()
        c.next_id = 1_000_000 * (id(c) % 1000)
        return c

    def raw(self, data):
        """Sends raw bytes; returns the decoded RpcReply."""
        self.sock.send(data)
        rep = pb.RpcReply()
        rep.ParseFromString(self.sock.recv())
        return rep

    def call(self, method, req=None, timeout_ms=0):
        """Returns (code, message, reply message or None)."""
        env = pb.RpcRequest(method=PREFIX + method, call_id=self.next_id,
                            payload=req.SerializeToString() if req is not None else b"",
                            timeout_ms=timeout_ms)
        self.next_id += 1
        rep = self.raw(env.SerializeToString())
        assert rep.call_id == env.call_id, (rep.call_id, env.call_id)
        out = None
        if rep.status.code == pb.OK:
            out = REPLY[method]()
            out.ParseFromString(rep.payload)
        return rep.status.code, rep.status.message, out

    def ok(self, method, req=None, **kw):
        code, msg, out = self.call(method, req, **kw)
        assert code == pb.OK, f"{method}: {pb.Code.Name(code)}: {msg}"
        return out

    def close(self):
        self.sock.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A braidd child process on a free port; stop() checks it exits 0."""

    def __init__(self, braidd, *args, log=None):
        self.addr = f"tcp://127.0.0.1:{free_port()}"
        self.log = log or f"/tmp/braidd-{os.getpid()}-{time.time_ns()}.log"
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen([braidd, "--listen", self.addr, "--log-level", "debug",
                                      *args], stdout=self.logf, stderr=subprocess.STDOUT)
        self.wait_healthy()

    def wait_healthy(self, seconds=60):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"braidd exited with {self.proc.returncode}:\n{self.text()}")
            try:
                c = Conn(self.addr, timeout_ms=500, block=True)
                try:
                    c.ok("Health", pb.HealthRequest())
                    return
                finally:
                    c.close()
            except (pynng.exceptions.Timeout, pynng.exceptions.ConnectionRefused):
                time.sleep(0.1)
        raise RuntimeError(f"braidd did not answer Health:\n{self.text()}")

    def text(self):
        self.logf.flush()
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.logf.close()
        if rc != 0:
            raise RuntimeError(f"braidd exited with {rc}:\n{self.text()}")
        os.unlink(self.log)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def stream_all(conn, stream_id, max_wait_ms=10000):
    """Polls a stream to its final event (acknowledging as it goes); returns the events."""
    events, ack = [], 0
    while True:
        r = conn.ok("StreamNext", pb.StreamNextRequest(stream_id=stream_id, ack_seq=ack,
                                                       max_wait_ms=max_wait_ms))
        for e in r.events:
            events.append(e)
            ack = e.seq
        if events and events[-1].HasField("final"):
            conn.ok("StreamNext", pb.StreamNextRequest(stream_id=stream_id, ack_seq=ack))
            return events


def corrupt(data, placeholder, bad):
    """data with placeholder (bytes) replaced by bad padded to the same length, so the
    protobuf length prefixes stay right: how a test sends text that is not UTF-8."""
    assert len(bad) <= len(placeholder) and data.count(placeholder) == 1
    return data.replace(placeholder, bad + b"x" * (len(placeholder) - len(bad)))


def main_guard(model):
    """Skips (exit 77) when the model file is missing."""
    if not os.path.exists(model):
        print(f"SKIP: {model} missing (run deploy/fetch_model.sh)")
        sys.exit(77)


def poll_some(conn, stream_id, ack=0, seconds=60):
    """Polls until at least one event arrives (slow builds may take several
    long polls for the first token); returns the reply."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        r = conn.ok("StreamNext", pb.StreamNextRequest(stream_id=stream_id, ack_seq=ack,
                                                       max_wait_ms=10000))
        if r.events:
            return r
    raise AssertionError(f"no event on stream {stream_id:x} in {seconds} s")
