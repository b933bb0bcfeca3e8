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
    return decode(line)


def decode(line: bytes) -> dict:
    """One line as a message object: a JSON object whose "type" is a string."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep, which fit in a line
        raise Refusal("a line that is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise Refusal("a line that is not a message object")
    return message


# What the service reads in an agent's messages, by type; every other field is passed on as it came (a
# reply's results go to the console as JSON) or ignored.
AGENT_TEXT_FIELDS = {"hello": ("vm_uuid", "certificate_serial", "agent_version", "os", "hostname"),
                     "customization": ("message",), "ssr": ("action", "snapshot")}
AGENT_LIST_FIELDS = {"hello": ("ip_addresses", "capabilities")}
# What a guest may say of its customization (cloud-init's result); `unknown` it keeps to itself.
CUSTOMIZATION_STATES = ("running", "succeeded", "failed")


def check_agent_message(message: dict) -> dict:
    """`message` (from `decode`) when the fields the service reads have the types it reads them as, so that
    no part of the service fails on it; else a Refusal naming the field."""
    kind = message["type"]
    if not isinstance(message.get("id"), str):
        raise Refusal(f"a {kind} message whose 'id' is not a string")
    for name in AGENT_TEXT_FIELDS.get(kind, ()):
        if not isinstance(message.get(name, ""), str):
            raise Refusal(f"a {kind} whose '{name}' is not a string")
    for name in AGENT_LIST_FIELDS.get(kind, ()):
        value = message.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise Refusal(f"a {kind} whose '{name}' is not a list of strings")
    if kind == "customization" and message.get("status") not in CUSTOMIZATION_STATES:
        raise Refusal(f"a customization whose 'status' is not one of {', '.join(CUSTOMIZATION_STATES)}")
    if kind == "reply" and not isinstance(message.get("ok", False), bool):
        raise Refusal("a reply whose 'ok' is not true or false")
    return message


# A link's lines (link.py), by type: the fields each must have, and of which type.
LINK_FIELDS = {"open": {"session": dict, "hello": dict}, "agent": {"message": dict}, "admitted": {}, "end": {}}


def link_problem(line: dict) -> str:
    """What is wrong with a line of a proxy's link to the leader ("" when nothing)."""
    if line["type"] not in LINK_FIELDS:
        return f"a link line of unknown type {line['type']!r}"
    if type(line.get("sid")) is not int:  # not a bool either
        return f"a {line['type']} line whose 'sid' is not a number"
    for name, kind in LINK_FIELDS[line["type"]].items():
        if not isinstance(line.get(name), kind):
            return f"a {line['type']} line whose '{name}' is not a {kind.__name__}"
    return ""


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
