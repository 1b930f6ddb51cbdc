"""The Python client against braidd on tls+tcp:// (run by test_tls.sh).

Over TLS with the right CA: Health, a streamed greedy generation, complete()
and the asyncio client. Refused, each at construction with its message: no CA
file, another CA, a server name the certificate does not carry, and plain
tcp:// to the TLS port.
Usage: tls_client.py TLS_ADDRESS CA_PEM OTHER_CA_PEM
"""
import asyncio
import sys
import time

import braid

addr, ca, other = sys.argv[1:4]
plain = addr.replace("tls+tcp://", "tcp://")
QUESTION = "What is the capital of France?"

with braid.Client(addr, timeout=60, tls_ca_file=ca) as c:
    assert c.health().serving
    events = list(c.generate(QUESTION, max_tokens=8, temperature=0.0))
    final = events[-1]
    assert isinstance(final, braid.FinalEvent), final
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    text = "".join(e.text for e in events)
    assert "Paris" in text, text
    assert c.complete(QUESTION, max_tokens=8, temperature=0.0).text == text
    print(f"ok  python over TLS: {len(events) - 1} tokens {text!r}")


async def async_health():
    async with braid.AsyncClient(addr, tls_ca_file=ca, tls_server_name="localhost") as c:
        return await c.health()


assert asyncio.run(async_health()).serving
print("ok  asyncio client over TLS (explicit server name)")


def refused(exc, pattern, address=addr, **kw):
    t0 = time.monotonic()
    try:
        braid.Client(address, timeout=20, **kw).health()
    except exc as e:
        ms = (time.monotonic() - t0) * 1000
        assert pattern in str(e), e
        assert ms < 5000, f"{ms:.0f} ms to fail"
        print(f"ok  refused in {ms:.0f} ms: {e}")
        return
    raise AssertionError(f"{address} {kw} was not refused")


refused(braid.InvalidArgument, "needs tls_ca_file")
refused(braid.Unavailable, "TLS handshake failed", tls_ca_file=other)
refused(braid.Unavailable, "TLS handshake failed", tls_ca_file=ca, tls_server_name="evil.example")
refused(braid.InvalidArgument, "not a tls+tcp:// address", plain, tls_ca_file=ca)
refused(braid.Unavailable, "dropped the connection during the handshake", plain)

with braid.Client(addr, tls_ca_file=ca) as c:
    assert c.health().serving
print("ok  braidd still serves TLS")
