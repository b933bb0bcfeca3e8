"""The tools ISO: built in memory with pycdlib (ISO 9660 + Joliet + Rock Ridge, label FACET_TOOLS) and written
to the VM's storage container. It is the only place a VM's private key is ever written."""

import contextlib
import functools
import io
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import pycdlib

VOLUME_LABEL = "FACET_TOOLS"
AGENT_PORT = 2074
CHANNEL_NAME = "org.facet.guest_tools.0"
KEY_FILE = "config/client.key"
INSTALLER_README = b"""Facet Guest Tools

Linux, as root, with this disc mounted (mount -o ro LABEL=FACET_TOOLS /mnt):
    sh /mnt/installer/linux/install.sh               the .deb, the .rpm, or the files copied in place
    sh /mnt/installer/linux/install.sh --foreground  where no systemd runs: the agent in this shell
Windows, in an administrator's PowerShell, with Python 3.9 or newer on PATH:
    D:\\installer\\windows\\install.ps1
The agent reads config/ (this VM's identity and certificates) from this disc, copies it to
/etc/facet-guest-tools/, and links with the Guest Tools Service.
"""
MISSING_PACKAGES = b"""
The agent's packages were not built on the host that made this disc: run `make guest-tools-packages` there
and mount Guest Tools again.
"""
# Rock Ridge modes: the key readable by its owner only once the guest mounts the ISO.
FILE_MODE = 0o100444
KEY_MODE = 0o100400
DIRECTORY_MODE = 0o040555
# Root owns the file, the hypervisor's user (libvirt-qemu, qemu) reads it through the group; nobody else may,
# since it holds a private key.
ISO_FILE_MODE = 0o640
_trees = threading.local()
log = logging.getLogger(__name__)


def is_shared(path: str) -> bool:
    """The same in every tools ISO of a cluster (no secret among them): they stay in a thread's tree between
    builds."""
    return path == "config/ca.pem" or path.startswith("installer/")


def ngt_config(*, vm_uuid: str, cluster_vip: str, ca_fingerprint: str, certificate_serial: str,
               capabilities: list[str], tools_version: str) -> bytes:
    """`config/ngt.json`, what the agent reads to know who it is and whom to call."""
    return json.dumps({
        "vm_uuid": vm_uuid,
        "cluster_vip": cluster_vip,
        "port": AGENT_PORT,
        "channel": CHANNEL_NAME,
        "ca_fingerprint_sha256": ca_fingerprint,
        "certificate_serial": certificate_serial,
        "capabilities": capabilities,
        "tools_version": tools_version,
    }, indent=2).encode() + b"\n"


def tools_files(config: bytes, ca_pem: str, client_pem: str, client_key_pem: bytes,
                installer: Mapping[str, bytes]) -> dict[str, bytes]:
    """The ISO's files by path: the VM's configuration and certificates, and `installer` (empty for a clone
    whose template has the agent)."""
    return {
        "config/ngt.json": config,
        "config/ca.pem": ca_pem.encode(),
        "config/client.pem": client_pem.encode(),
        KEY_FILE: client_key_pem,
        **installer,
    }


def installer_files(packages: Path) -> dict[str, bytes]:
    """installer/: the README, and the agent's packages as `make guest-tools-packages` built them into
    `packages` (linux/, windows/). Read once per build of them, since every ISO carries the same bytes."""
    try:
        built = packages.stat().st_mtime_ns
    except FileNotFoundError:
        built = 0
    return _installer_files(packages, built)


@functools.lru_cache(maxsize=4)
def _installer_files(packages: Path, built: int) -> dict[str, bytes]:
    files = {f"installer/{path.relative_to(packages).as_posix()}": path.read_bytes()
             for path in sorted(packages.glob("*/**/*")) if path.is_file()}
    if not files:
        log.warning("no Guest Tools packages in %s: tools ISOs carry the configuration only "
                    "(run `make guest-tools-packages`)", packages)
        return {"installer/README": INSTALLER_README + MISSING_PACKAGES}
    return {"installer/README": INSTALLER_README, **files}


def iso9660_name(name: str) -> str:
    """A Joliet/Rock Ridge name as ISO 9660 level 3 spells it: upper case, d-characters only, one dot before
    the extension."""
    stem, dot, extension = name.upper().rpartition(".")
    if not dot:
        stem, extension = extension, ""

    def d_characters(part: str) -> str:
        return "".join(c if c.isalnum() or c == "_" else "_" for c in part)

    return d_characters(stem) + dot + d_characters(extension)


def _add_file(iso: pycdlib.PyCdlib, path: str, data: bytes) -> str:
    iso_path = iso9660_path(path) + ";1"
    iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=path.rsplit("/", 1)[-1], joliet_path="/" + path,
               file_mode=KEY_MODE if path == KEY_FILE else FILE_MODE)
    return iso_path


def _tree_cache() -> dict[tuple[str, ...], tuple[dict[str, bytes], pycdlib.PyCdlib]]:
    if not hasattr(_trees, "by_directories"):
        _trees.by_directories = {}
    return _trees.by_directories


def _tree(directories: tuple[str, ...], shared: dict[str, bytes]) -> pycdlib.PyCdlib:
    """An ISO holding the directories and the shared files, made once per thread (and again when the shared
    files change): pycdlib's `new()`, the tree and those files are most of the work of a build, so a VM's own
    files are added to it for one image and removed after."""
    cache = _tree_cache()
    cached = cache.get(directories)
    if cached is not None and cached[0] == shared:
        return cached[1]
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_LABEL)
    for directory in directories:
        iso.add_directory(iso9660_path(directory), rr_name=directory.rsplit("/", 1)[-1],
                          joliet_path="/" + directory, file_mode=DIRECTORY_MODE)
    for path, data in sorted(shared.items()):
        _add_file(iso, path, data)
    cache[directories] = (shared, iso)
    return iso


def iso9660_path(path: str) -> str:
    return "/" + "/".join(map(iso9660_name, path.split("/")))


def build_iso(files: Mapping[str, bytes]) -> bytes:
    """The ISO image of `files` (paths with '/'), made in memory: nothing touches the disk."""
    directories = tuple(sorted({"/".join(path.split("/")[:depth]) for path in files
                                for depth in range(1, path.count("/") + 1)}))
    shared = {path: data for path, data in files.items() if is_shared(path)}
    iso = _tree(directories, shared)
    added = []
    try:
        for path, data in sorted(files.items()):
            if path not in shared:
                added.append(_add_file(iso, path, data))
        image = io.BytesIO()
        iso.write_fp(image)
    except BaseException:
        del _tree_cache()[directories]  # half-filled: the next build starts from a new one
        raise
    for iso_path in added:
        iso.rm_file(iso_path)
    return image.getvalue()


def write_iso(path: Path, image: bytes) -> None:
    """Write the image through a `.part` file renamed at the end, so that no reader ever sees half an ISO;
    the group is the storage container directory's (the hypervisor's, where the administrator set it up so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ISO_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), ISO_FILE_MODE)  # the umask may not widen it, but say it once for all
            with contextlib.suppress(PermissionError):  # not root and not in that group: keep our own
                os.fchown(handle.fileno(), -1, path.parent.stat().st_gid)
            handle.write(image)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def remove_iso(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".part")):
        candidate.unlink(missing_ok=True)
