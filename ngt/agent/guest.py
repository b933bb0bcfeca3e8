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
    """cloud-init's state as the console's words: `succeeded`/`failed` once result.json is written,
    `running` while only status.json is, `unknown` without cloud-init."""
    def read(name: str) -> dict:
        try:
            return json.loads((cloud_init_dir / name).read_text()).get("v1", {})
        except (OSError, ValueError, AttributeError):
            return {}

    result, status = read("result.json"), read("status.json")
    if result:
        errors = result.get("errors", [])
        return {"status": "failed" if errors else "succeeded", "message": "; ".join(map(str, errors))[:4000]}
    if status:
        return {"status": "running", "message": str(status.get("stage") or "")}
    return {"status": "unknown", "message": "no cloud-init status in this guest"}


def facts(cloud_init_dir: Path = CLOUD_INIT_DIR) -> dict:
    return {"os": os_name(), "kernel": platform.release(), "hostname": socket.gethostname(),
            "ip_addresses": ip_addresses(), "uptime_seconds": uptime_seconds(),
            "cloud_init": customization_status(cloud_init_dir)["status"]}
