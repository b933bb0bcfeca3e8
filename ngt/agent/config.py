"""Where the agent learns who it is: the tools ISO (label FACET_TOOLS) or its installed copy.

The ISO wins whenever its VM uuid or certificate serial differs from the installed copy (a clone, a
remount): its files are copied over, ngt.json last, so a copy cut short is simply made again at the next
scan. Standard library only, Python 3.9+."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("facet-guest-tools")

INSTALLED_DIR = Path("/etc/facet-guest-tools")
ISO_LABEL = "FACET_TOOLS"
ISO_DEVICE = Path(f"/dev/disk/by-label/{ISO_LABEL}")
CONFIG_FILE = "ngt.json"
CA_FILE, CERTIFICATE_FILE, KEY_FILE = "ca.pem", "client.pem", "client.key"
# Copied in this order: ngt.json names the identity, so it goes last.
FILES = (CA_FILE, CERTIFICATE_FILE, KEY_FILE, CONFIG_FILE)


@dataclass(frozen=True)
class AgentConfig:
    """ngt.json and the directory holding its certificates."""

    vm_uuid: str
    cluster_vip: str
    port: int
    channel: str
    certificate_serial: str
    ca_fingerprint: str
    capabilities: tuple
    tools_version: str
    directory: Path

    @property
    def identity(self) -> tuple:
        return self.vm_uuid, self.certificate_serial

    def path(self, name: str) -> Path:
        return self.directory / name


def load(directory: Path) -> AgentConfig | None:
    """The configuration in `directory` (ngt.json beside the PEM files), or None when there is none."""
    try:
        data = json.loads((directory / CONFIG_FILE).read_text())
        return AgentConfig(
            vm_uuid=data["vm_uuid"], cluster_vip=data["cluster_vip"], port=int(data["port"]),
            channel=data["channel"], certificate_serial=data["certificate_serial"],
            ca_fingerprint=data.get("ca_fingerprint_sha256", ""), capabilities=tuple(data.get("capabilities", ())),
            tools_version=data.get("tools_version", ""), directory=directory)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the configuration in %s: %s", directory, exc)
        return None


def _mount_point(device: Path) -> Path | None:
    """Where the device is mounted already, from /proc/mounts."""
    real = os.path.realpath(device)
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            source, target = line.split()[:2]
            if os.path.realpath(source) == real:
                return Path(target.replace("\\040", " "))
    return None


def find_iso_device() -> Path | None:
    """The tools disc: udev's by-label link, else what blkid finds by scanning (guests without udev, such as
    minimal images and containers, have no by-label links)."""
    if ISO_DEVICE.exists():
        return ISO_DEVICE
    try:
        found = subprocess.run(["blkid", "-c", "/dev/null", "-l", "-o", "device", "-t", f"LABEL={ISO_LABEL}"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(found) if found else None


@contextlib.contextmanager
def _iso_config_dir(media: Path | None):
    """The ISO's config/ directory for the time of a scan: `media` when given (tests, sim_guest), else the
    FACET_TOOLS device, mounted read-only in a temporary directory when nobody mounted it."""
    if media is not None:
        yield media / "config" if (media / "config").is_dir() else media
        return
    device = find_iso_device()
    if device is None:
        yield None
        return
    mounted = _mount_point(device)
    if mounted is not None:
        yield mounted / "config"
        return
    with tempfile.TemporaryDirectory(prefix="facet-tools-") as target:
        result = subprocess.run(["mount", "-o", "ro", str(device), target], capture_output=True, text=True)
        if result.returncode != 0:
            log.warning("cannot mount %s read-only: %s", device, result.stderr.strip())
            yield None
            return
        try:
            yield Path(target) / "config"
        finally:
            subprocess.run(["umount", target], capture_output=True)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def install(source: Path, installed_dir: Path) -> None:
    """Copy the ISO's configuration over the installed one; the private key readable by root only."""
    installed_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    for name in FILES:
        _write_atomically(installed_dir / name, (source / name).read_bytes(), 0o600 if name == KEY_FILE else 0o644)


def discover(media: Path | None, installed_dir: Path) -> AgentConfig | None:
    """The configuration to talk with: the ISO's when it names another VM or serial than the installed
    copy (which it then replaces), else the installed copy."""
    installed = load(installed_dir)
    with _iso_config_dir(media) as iso_dir:
        iso = load(iso_dir) if iso_dir is not None else None
        if iso is not None and (installed is None or iso.identity != installed.identity):
            log.info("the tools ISO names VM %s, certificate %s: installing its configuration",
                     iso.vm_uuid, iso.certificate_serial)
            install(iso_dir, installed_dir)
            installed = load(installed_dir)
    return installed
