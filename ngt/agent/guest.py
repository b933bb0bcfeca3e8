"""What the guest knows of itself: OS, kernel, hostname, addresses, uptime, and cloud-init's status."""

from __future__ import annotations

import ipaddress
import json
import platform
import socket
import subprocess
from pathlib import Path

CLOUD_INIT_DIR = Path("/run/cloud-init")


def os_name(os_release: Path = Path("/etc/os-release")) -> str:
    try:
        for line in os_release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}"


def ip_addresses() -> list:
    """The IPv4 and IPv6 addresses of the guest's interfaces, loopback and link-local left out."""
    try:
        output = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
        interfaces = json.loads(output or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    addresses = []
    for interface in interfaces:
        for entry in interface.get("addr_info", []):
            address = ipaddress.ip_address(entry["local"])
            if not (address.is_loopback or address.is_link_local):
                addresses.append(str(address))
    return addresses


def uptime_seconds() -> float:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def customization_status(cloud_init_dir: Path = CLOUD_INIT_DIR) -> dict:
    """cloud-init's state as the console's words, read from the files `cloud-init status` reads (running it
    costs a Python start every heartbeat): `succeeded` or `failed` once its final stage wrote result.json,
    `running` while only status.json is there, `unknown` without cloud-init (or before it starts).

    `failed` when any stage recorded an error: result.json lists them all, status.json each stage's (a
    module that raised, such as a runcmd that exited non-zero: "('scripts_user', RuntimeError(...))"). The
    message is those lines, then the warnings cloud-init 23.4 and later keep as `recoverable_errors`
    (a `succeeded` with such lines is what `cloud-init status` calls degraded)."""
    def read(name: str) -> dict:
        try:
            found = json.loads((cloud_init_dir / name).read_text()).get("v1", {})
        except (OSError, ValueError, AttributeError):
            return {}
        return found if isinstance(found, dict) else {}

    result, status = read("result.json"), read("status.json")
    if not result:
        if status:
            return {"status": "running", "message": str(status.get("stage") or "")}
        return {"status": "unknown", "message": "no cloud-init status in this guest"}
    stages = [stage for stage in status.values() if isinstance(stage, dict)]
    errors = _lines(result.get("errors"), *(stage.get("errors") for stage in stages))
    warnings = _lines(*(f"{level}: {line}" for stage in stages
                        for level, lines in _levels(stage.get("recoverable_errors"))
                        for line in lines))
    return {"status": "failed" if errors else "succeeded", "message": "\n".join(errors + warnings)[:4000]}


def _lines(*groups) -> list:
    """The text lines of `groups` (lists, or single lines), each once, in order."""
    seen: list = []
    for group in groups:
        for line in group if isinstance(group, list) else [group] if group else []:
            if str(line) not in seen:
                seen.append(str(line))
    return seen


def _levels(recoverable) -> list:
    """(level, lines) of a stage's recoverable_errors, e.g. {"WARNING": ["..."]}."""
    if not isinstance(recoverable, dict):
        return []
    return [(level, lines) for level, lines in recoverable.items() if isinstance(lines, list)]


def facts(cloud_init_dir: Path = CLOUD_INIT_DIR) -> dict:
    return {"os": os_name(), "kernel": platform.release(), "hostname": socket.gethostname(),
            "ip_addresses": ip_addresses(), "uptime_seconds": uptime_seconds(),
            "cloud_init": customization_status(cloud_init_dir)["status"]}
