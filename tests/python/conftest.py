"""Fixtures of the Python client's tests: the package from the source tree, free
ports, a fake braidd (tests of the client alone) and the real braidd with
SmolLM2 (integration tests; skipped with the reason when braidd or the model
is absent).

The real server is found through $BRAIDD (ctest passes the built target) or
build-py/service/braidd, and the model through $BRAID_TEST_MODEL or
models/SmolLM2-135M-Instruct.Q4_1.gguf (fetched by deploy/fetch_model.sh).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import braid  # noqa: E402
from fake_braidd import FakeBraidd  # noqa: E402

#: Seconds without polling after which braidd cancels a stream (kept short so the
#: disappearing-client test does not wait long).
IDLE_TIMEOUT = 2.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


T = TypeVar("T")


def run_in_threads(fn: Callable[[int], T], n: int, timeout: float = 90.0) -> List[T]:
    """Runs fn(0) .. fn(n-1) on n threads at once; returns their results in order,
    re-raising the first exception any of them raised."""
    results: dict = {}
    errors: list = []

    def run(i: int) -> None:
        try:
            results[i] = fn(i)
        except BaseException as e:  # handed to the test below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if errors:
        raise errors[0]
    assert len(results) == n, f"{n - len(results)} threads did not finish in {timeout} s"
    return [results[i] for i in range(n)]


@pytest.fixture
def fake() -> Iterator[FakeBraidd]:
    srv = FakeBraidd(f"tcp://127.0.0.1:{free_port()}")
    yield srv
    srv.close()


class Server:
    """A running braidd: its address, process and log file."""

    def __init__(self, address: str, proc: subprocess.Popen, log: Path) -> None:
        self.address = address
        self.proc = proc
        self.log = log

    def client(self, **kw) -> braid.Client:
        return braid.Client(self.address, **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _find_braidd() -> Path | None:
    env = os.environ.get("BRAIDD")
    if env:
        return Path(env)
    p = ROOT / "build-py" / "service" / "braidd"
    return p if p.exists() else None


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    exe = _find_braidd()
    model = Path(os.environ.get("BRAID_TEST_MODEL", ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if exe is None or not exe.exists():
        pytest.skip("braidd not built (set $BRAIDD or build build-py/service/braidd)")
    if not model.exists():
        pytest.skip(f"model {model} absent (run: bash deploy/fetch_model.sh)")
    addr = f"tcp://127.0.0.1:{free_port()}"
    log = Path(tempfile.mkstemp(prefix="braidd-pytest-", suffix=".log")[1])
    args = [str(exe), "--listen", addr, "--model", str(model), "--threads", "2",
            "--kv-tokens", "16384", "--stream-idle-timeout", str(IDLE_TIMEOUT), "--log-level", "info"]
    with open(log, "wb") as f:
        proc = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT)
    srv = Server(addr, proc, log)
    try:
        with braid.Client(addr, timeout=2.0) as c:
            deadline = time.monotonic() + 60
            while True:
                if not srv.alive():
                    pytest.fail(f"braidd exited with {proc.returncode}:\n{srv.log_tail()}")
                try:
                    if c.health().serving:
                        break
                except braid.BraidError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"braidd not serving after 60 s:\n{srv.log_tail()}")
                time.sleep(0.1)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.unlink(missing_ok=True)


@pytest.fixture
def client(server: Server) -> Iterator[braid.Client]:
    with server.client(timeout=30.0) as c:
        yield c


# pynng can crash in its own teardown at interpreter exit (about one run in 30,
# after every test has passed and the summary is printed), which would turn a
# green run red. Leave with the session's status once pytest is done, skipping
# interpreter teardown.
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._braid_exitstatus = int(exitstatus)  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    status = getattr(config, "_braid_exitstatus", None)
    if status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
