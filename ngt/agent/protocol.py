"""The agent's side of the Guest Tools protocol: newline-delimited JSON objects `{"id", "type", ...}`.

The agent opens with `hello` and sends a `heartbeat` every interval, and `customization` (cloud-init's
status and its error lines) once welcomed and whenever that changes; the service sends commands (`get_info`,
`shutdown`, `reboot`, `customization_status`) and the agent answers each with a `reply` carrying the same
`id`. One protocol over the serial channel and over TLS."""

from __future__ import annotations

import itertools
import json

MAX_LINE = 64 * 1024  # longer lines are refused by both sides
COMMANDS = ("get_info", "shutdown", "reboot", "customization_status")
_ids = itertools.count(1)


class ProtocolError(ValueError):
    """A line that is not one of our messages."""


def next_id() -> str:
    return f"a{next(_ids)}"


def encode(message: dict) -> bytes:
    line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes is over the {MAX_LINE}-byte line limit")
    return line


def decode(line: bytes) -> dict:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep, which fit in a line
        raise ProtocolError("not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("id"), str) or \
            not isinstance(message.get("type"), str):
        raise ProtocolError("not an object with a string id and type")
    return message


def hello(vm_uuid: str, certificate_serial: str, agent_version: str, capabilities: list, facts: dict) -> dict:
    return {"id": next_id(), "type": "hello", "vm_uuid": vm_uuid, "certificate_serial": certificate_serial,
            "agent_version": agent_version, "capabilities": capabilities, "os": facts.get("os", ""),
            "hostname": facts.get("hostname", ""), "ip_addresses": facts.get("ip_addresses", [])}


def customization(status: dict) -> dict:
    """cloud-init's result as `guest.customization_status` reads it: running, succeeded or failed."""
    return {"id": next_id(), "type": "customization", "status": status["status"], "message": status["message"]}


def heartbeat() -> dict:
    return {"id": next_id(), "type": "heartbeat"}


def reply(command: dict, **result: object) -> dict:
    return {"id": command["id"], "type": "reply", "ok": True, **result}


def error(command: dict, message: str) -> dict:
    return {"id": command.get("id", ""), "type": "reply", "ok": False, "error": message}
