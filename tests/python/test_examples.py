"""Both examples of clients/python/examples run against the real braidd (briefly:
few tokens) and show the reuse they are about: cached prompt tokens rising
across the RAG questions, and every agent reading the shared project chunk."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT, Server

EXAMPLES = ROOT / "clients" / "python" / "examples"


def _run(server: Server, name: str) -> str:
    env = {"PYTHONPATH": str(ROOT / "clients" / "python")}
    p = subprocess.run([sys.executable, str(EXAMPLES / name), "--address", server.address, "--max-tokens", "6"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_examples_rag_cache_rises(server: Server) -> None:
    out = _run(server, "rag.py")
    cached = [int(m) for m in re.findall(r"\[(\d+)/\d+ prompt tokens cached", out)]
    assert len(cached) == 4, out
    assert cached[-1] > cached[0] and cached[-1] > 0, out


def test_examples_agents_share_context(server: Server) -> None:
    out = _run(server, "agents.py")
    assert len(re.findall(r"^\[(planner|engineer|designer|tester)\] ", out, re.M)) == 4, out
    cached = [int(m) for m in re.findall(r"(\d+)/\d+ prompt tokens from cache", out)]
    assert len(cached) == 4 and all(c > 0 for c in cached), out
    hits = int(re.search(r"shared chunk: (\d+) hits", out).group(1))
    assert hits >= 4, out
