#!/usr/bin/env python3
"""rag.py - retrieval-augmented answers over a few documents registered once as chunks.

Each document becomes a chunk whose KV braidd computes once; every question is
a composition of the documents it needs plus the question itself. As the same
documents come back in later questions, the share of prompt tokens served
from cache rises, which the script prints per question.

    python examples/rag.py [--address tcp://127.0.0.1:7543] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, List

import braid

DOCUMENTS: Dict[str, str] = {
    "lighthouse": "The Braid Lighthouse stands on Kestrel Point. It was built in 1871 from grey granite, "
                  "is 38 metres tall, and its lamp can be seen 24 nautical miles out to sea.",
    "ferry": "The Kestrel ferry crosses to Gull Island four times a day in summer and twice a day in "
             "winter. The crossing takes 40 minutes and costs 6 euros for adults.",
    "museum": "The Kestrel Maritime Museum opens from 10:00 to 17:00, Tuesday to Sunday. It keeps the "
              "lighthouse's original 1871 lens and a collection of ship models.",
}

# Each question names the documents a retriever would have picked for it.
QUESTIONS: List[tuple] = [
    ("How tall is the lighthouse?", ["lighthouse"]),
    ("How long does the ferry take?", ["lighthouse", "ferry"]),
    ("Where can I see the original lighthouse lens?", ["lighthouse", "ferry", "museum"]),
    ("When was the lighthouse built, and when does the museum open?", ["lighthouse", "ferry", "museum"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", default=os.environ.get("BRAID_ADDRESS", "tcp://127.0.0.1:7543"))
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()

    with braid.Client(args.address) as client:
        system = client.register_chunk("Answer from the documents only, in one short sentence.", role="system")
        chunks = {name: client.register_chunk(text, role="context") for name, text in DOCUMENTS.items()}
        for name, c in chunks.items():
            print(f"registered {name:<10} {c.id[:12]}  {c.num_tokens:3d} tokens")
        print()

        for question, names in QUESTIONS:
            parts = [braid.Chunk(system.id)] + [braid.Chunk(chunks[n].id) for n in names] + [question]
            print(f"Q: {question}")
            print("A: ", end="", flush=True)
            stream = client.generate(parts, max_tokens=args.max_tokens, temperature=0.0)
            for ev in stream:
                if isinstance(ev, braid.TokenEvent):
                    print(ev.text, end="", flush=True)
                else:
                    u = ev.usage
                    print(ev.text)
                    share = 100.0 * u.cached_prompt_tokens / max(1, u.prompt_tokens)
                    print(f"   [{u.cached_prompt_tokens}/{u.prompt_tokens} prompt tokens cached ({share:.0f}%), "
                          f"first token after {u.time_to_first_token_ms:.0f} ms]\n")

        s = client.stats()
        print(f"service: {s.cached_prompt_tokens} of {s.prompt_tokens} prompt tokens served from cache "
              f"over {s.generations} generations")


if __name__ == "__main__":
    main()
