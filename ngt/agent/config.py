"""Where the agent learns who it is: the tools ISO (label FACET_TOOLS) or its installed copy.

The ISO wins whenever its VM uuid or certificate serial differs from the installed copy (a clone, a
remount) and its CA is the installed one (or none is installed yet): its files are copied over, ngt.json
last, so a copy cut short is simply made again at the next scan. Any disc may carry the FACET_TOOLS label,
so what is read there is read with care: no symbolic link followed (the config/ directory and each file
opened with O_NOFOLLOW), regular files only, each at most MAX_FILE bytes, and the disc mounted read-only,
nosuid, nodev, noexec. Standard library only, Python 3.9+."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import ssl
import stat
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
MAX_FILE = 64 * 1024  # ngt.json and each PEM file are a few KiB
# Windows has neither O_NOFOLLOW nor dir_fd; its CD-ROM file systems (ISO 9660, Joliet) show no links.
OPENS_WITHOUT_FOLLOWING = hasattr(os, "O_NOFOLLOW") and os.open in os.supports_dir_fd


class UnsafeFile(OSError):
    """A file of the configuration that is a link, not a regular file, or too large: not read."""


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


def read_file(directory_fd: int, name: str) -> bytes:
    """One file of an opened directory: not through a symbolic link, a regular file, at most MAX_FILE bytes
    (O_NONBLOCK: a FIFO standing there must not block the agent before it is seen for what it is)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{name} is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFile(f"{name} is not a regular file")
        return read_capped(handle, name)


def read_capped(handle, name: str) -> bytes:
    data = handle.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise UnsafeFile(f"{name} is over {MAX_FILE} bytes")
    return data


@contextlib.contextmanager
def opened_directory(directory: Path):
    """`directory` opened as itself: a symbolic link standing there is refused, not followed."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(directory):
            raise UnsafeFile(f"{directory} is a symbolic link") from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def read_files(directory: Path, names: tuple = FILES) -> dict:
    """The files `names` of `directory`, by name; FileNotFoundError when one is missing."""
    if not OPENS_WITHOUT_FOLLOWING:
        result = {}
        for name in names:
            with open(directory / name, "rb") as handle:
                result[name] = read_capped(handle, name)
        return result
    with opened_directory(directory) as fd:
        return {name: read_file(fd, name) for name in names}


def load(directory: Path) -> AgentConfig | None:
    """The configuration in `directory` (ngt.json beside the PEM files), or None when there is none."""
    try:
        data = json.loads(read_files(directory, (CONFIG_FILE,))[CONFIG_FILE])
        return AgentConfig(
            vm_uuid=data["vm_uuid"], cluster_vip=data["cluster_vip"], port=int(data["port"]),
            channel=data["channel"], certificate_serial=data["certificate_serial"],
            ca_fingerprint=data.get("ca_fingerprint_sha256", ""), capabilities=tuple(data.get("capabilities", ())),
            tools_version=data.get("tools_version", ""), directory=directory)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        log.warning("ignoring the configuration in %s: %s", directory, exc)
        return None


def ca_identity(pem: bytes) -> str:
    """What names a CA certificate whatever its PEM's line breaks: the SHA-256 of its DER."""
    try:
        der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        der = pem.strip()  # not a PEM certificate: compared as it is
    return hashlib.sha256(der).hexdigest()


def installed_ca(installed_dir: Path) -> bytes | None:
    """The installed CA certificate, None before the first install."""
    try:
        return read_files(installed_dir, (CA_FILE,))[CA_FILE]
    except FileNotFoundError:
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
        yield media / "config" if os.path.lexists(media / "config") else media
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
        result = subprocess.run(["mount", "-o", "ro,nosuid,nodev,noexec", str(device), target],
                                capture_output=True, text=True)
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


def install(files: dict, installed_dir: Path) -> None:
    """Write the ISO's configuration (as `read_files` read it) over the installed one; the private key
    readable by root only."""
    installed_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    for name in FILES:
        _write_atomically(installed_dir / name, files[name], 0o600 if name == KEY_FILE else 0o644)


def discover(media: Path | None, installed_dir: Path) -> AgentConfig | None:
    """The configuration to talk with: the ISO's when it names another VM or serial than the installed
    copy and carries the installed CA (then it replaces the copy), else the installed copy."""
    installed = load(installed_dir)
    with _iso_config_dir(media) as iso_dir:
        iso = load(iso_dir) if iso_dir is not None else None
        if iso is not None and (installed is None or iso.identity != installed.identity):
            try:
                files = read_files(iso_dir)
            except OSError as exc:  # a file missing, or one not read (a link, too large)
                log.warning("ignoring the tools ISO's configuration: %s", exc)
                return installed
            trusted = installed_ca(installed_dir)
            if trusted is not None and ca_identity(files[CA_FILE]) != ca_identity(trusted):
                log.warning("ignoring the tools ISO naming VM %s: its CA is not the installed one (a disc of "
                            "another cluster, or not Facet's; remove %s to accept another CA)",
                            iso.vm_uuid, installed_dir)
                return installed
            log.info("the tools ISO names VM %s, certificate %s: installing its configuration",
                     iso.vm_uuid, iso.certificate_serial)
            install(files, installed_dir)
            installed = load(installed_dir)
    return installed
