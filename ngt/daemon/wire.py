"""The service's side of the line protocol: one JSON object per line, at most 64 KiB, at a bounded rate."""

import asyncio
import contextlib
import json
import time

MAX_LINE = 64 * 1024
FLOOD_RATE, FLOOD_BURST = 50.0, 200  # messages per second an agent may keep up, and its burst


class Refusal(Exception):
    """The peer broke the protocol: the session ends, with this reason logged and audited."""


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


async def read_message(reader: asyncio.StreamReader) -> dict | None:
    """The next message, None at the end of the stream."""
    try:
        line = await reader.readline()
    except (ValueError, asyncio.LimitOverrunError):  # StreamReader's limit: the line is over MAX_LINE
        raise Refusal(f"a line over {MAX_LINE} bytes") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # cut off by the end of the stream
    try:
        message = json.loads(line)
    except ValueError:
        raise Refusal("a line that is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise Refusal("a line that is not a message object")
    return message


class FloodGate:
    """A token bucket per session: an agent that keeps sending faster than FLOOD_RATE is cut off."""

    def __init__(self, rate: float = FLOOD_RATE, burst: int = FLOOD_BURST) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()

    def admit(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            raise Refusal("a flood of messages")
        self.tokens -= 1


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 2)
