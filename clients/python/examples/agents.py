#!/usr/bin/env python3
"""agents.py - several agents share one project-context chunk and run concurrently.

The project description is registered once; each agent composes it with its
own role prompt and task, and all agents generate at the same time from one
AsyncClient. braidd computes the shared context's KV once and every agent
reuses it: the script prints each answer with the prompt tokens it got from
cache, then the shared chunk's hits and the service's totals.

    python examples/agents.py [--address tcp://127.0.0.1:7543] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import List, Tuple

import braid

PROJECT = ("Project Heron is a mobile app that lets hikers report trail conditions. It has a Python "
           "backend on PostgreSQL, a React Native client, 12k weekly users, and a release due in three "
           "weeks. Known issues: slow photo uploads and no offline mode.")

AGENTS: List[Tuple[str, str, str]] = [
    ("planner", "You are a project planner. Be concise.", "List the top two priorities before the release."),
    ("engineer", "You are a senior backend engineer. Be concise.", "How would you speed up photo uploads?"),
    ("designer", "You are a UX designer. Be concise.", "Suggest one improvement for hikers without signal."),
    ("tester", "You are a QA lead. Be concise.", "What should be tested first?"),
]


async def run_agent(client: braid.AsyncClient, project: braid.ChunkInfo, name: str, role_prompt: str,
                    task: str, max_tokens: int) -> Tuple[str, braid.Completion]:
    # The shared chunk leads every composition, so its KV (computed once, at
    # registration) serves every agent exactly (reuse_mode "exact", the default);
    # each agent's own role prompt and task follow it as the private tail.
    parts = [braid.Chunk(project.id), braid.Text(role_prompt, role="system"), braid.Text(task, role="user")]
    answer = await client.complete(parts, max_tokens=max_tokens, temperature=0.0, client_request_id=name)
    return name, answer


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", default=os.environ.get("BRAID_ADDRESS", "tcp://127.0.0.1:7543"))
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()

    async with braid.AsyncClient(args.address) as client:
        project = await client.register_chunk(PROJECT, role="context", precompute=True)
        print(f"project context: chunk {project.id[:12]}, {project.num_tokens} tokens\n")
        results = await asyncio.gather(*(run_agent(client, project, n, r, t, args.max_tokens) for n, r, t in AGENTS))
        for name, ans in results:
            u = ans.usage
            print(f"[{name}] {ans.text.strip()}")
            print(f"    {u.cached_prompt_tokens}/{u.prompt_tokens} prompt tokens from cache, "
                  f"{u.completion_tokens} generated, first token after {u.time_to_first_token_ms:.0f} ms\n")
        shared = await client.get_chunk(project.id)
        s = await client.stats()
        print(f"shared chunk: {shared.hits} hits, {shared.tokens_saved} prompt tokens not recomputed")
        print(f"service: {s.cached_prompt_tokens} of {s.prompt_tokens} prompt tokens served from cache")


if __name__ == "__main__":
    asyncio.run(main())
