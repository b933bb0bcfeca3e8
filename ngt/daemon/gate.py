"""The door of the service's TLS ports (agents' 2074, proxies' 2073): anyone on the network may open a
connection there and start a TLS handshake before proving anything, so those are bounded. A connection over
a limit is closed at once, before any TLS work:

- at most `most_connections` open connections on the instance's ports together (sessions included),
- at most `most_handshakes` handshakes in progress together, and `most_per_address` from one client address,
- a handshake not done within `handshake_timeout` seconds is cut off.

Only handshakes are counted per address: after one, the peer holds a certificate of the cluster's CA, and many
guests behind one NAT address (or the benchmark's thousands of agents on loopback) may be linked at once."""

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("ngt.daemon")
Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REPORT_EVERY = 10.0  # seconds: connections turned away are logged as a count, not one line each


class ConnectionGate:
    def __init__(self, most_connections: int, most_handshakes: int, most_per_address: int,
                 handshake_timeout: float) -> None:
        self.most_connections, self.most_handshakes = most_connections, most_handshakes
        self.most_per_address, self.handshake_timeout = most_per_address, handshake_timeout
        self.open = 0
        self.handshaking: collections.Counter[str] = collections.Counter()
        self.turned_away, self.reported = 0, 0.0

    @classmethod
    def from_settings(cls, settings) -> "ConnectionGate":
        return cls(settings.GUEST_TOOLS_MAX_CONNECTIONS, settings.GUEST_TOOLS_MAX_HANDSHAKES,
                   settings.GUEST_TOOLS_MAX_HANDSHAKES_PER_ADDRESS, settings.GUEST_TOOLS_HANDSHAKE_TIMEOUT)

    def listener(self, context: ssl.SSLContext, serve: Serve) -> Serve:
        """A callback for `asyncio.start_server` without `ssl`: the gate starts TLS itself, once it let the
        connection in, and hands the TLS stream to `serve`."""
        return lambda reader, writer: self.admit(reader, writer, context, serve)

    def problem(self, address: str) -> str:
        if self.open >= self.most_connections:
            return f"{self.open} connections open"
        if sum(self.handshaking.values()) >= self.most_handshakes:
            return f"{self.most_handshakes} TLS handshakes in progress"
        if self.handshaking[address] >= self.most_per_address:
            return f"{self.most_per_address} TLS handshakes in progress from {address}"
        return ""

    async def admit(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext,
                    serve: Serve) -> None:
        address = str((writer.get_extra_info("peername") or ("",))[0])
        if problem := self.problem(address):
            writer.transport.abort()
            self.turn_away(problem)
            return
        self.open += 1
        try:
            self.handshaking[address] += 1
            try:
                await writer.start_tls(context, ssl_handshake_timeout=self.handshake_timeout)
            except (OSError, ssl.SSLError, TimeoutError) as exc:  # no certificate, a wrong one, too slow
                log.debug("TLS handshake from %s failed: %s", address, exc)
                writer.transport.abort()
                return
            finally:
                self.handshaking[address] -= 1
                if not self.handshaking[address]:
                    del self.handshaking[address]
            await serve(reader, writer)
        finally:
            self.open -= 1

    def turn_away(self, problem: str) -> None:
        self.turned_away += 1
        now = time.monotonic()
        if now - self.reported >= REPORT_EVERY:
            log.warning("turned away %d connections in the last %.0f s (now: %s)", self.turned_away,
                        REPORT_EVERY, problem)
            self.turned_away, self.reported = 0, now
