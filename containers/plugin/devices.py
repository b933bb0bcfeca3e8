"""The block-device side: loop devices over disk files (a registered machine), virtio disks by serial (a VM),
filesystems made only where `blkid` finds none, mounts."""

import contextlib
import logging
import os
import subprocess
import time
from pathlib import Path

BY_ID_WAIT_SECONDS = 10.0  # udev names a hot-plugged virtio disk shortly after the hypervisor adds it
COMMAND_SECONDS = 120.0
log = logging.getLogger("facet-volume-plugin")


class DeviceError(Exception):
    pass


def run(*command: str) -> str:
    began = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_SECONDS)
        log.debug("%s: %.0f ms", " ".join(command), (time.monotonic() - began) * 1000)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceError(f"{command[0]}: {exc}") from None
    if done.returncode != 0:
        raise DeviceError(f"{' '.join(command)}: {(done.stderr or done.stdout).strip() or done.returncode}")
    return done.stdout.strip()


def loops_of(file: Path) -> list[str]:
    """The loop devices over this file (after a crash we reuse one rather than add another)."""
    return run("losetup", "--noheadings", "--output", "NAME", "--associated", str(file)).split()


def attach_loop(file: Path) -> str:
    if not file.is_file():
        raise DeviceError(f"disk file {file} is missing (is the storage container mounted at the same path?)")
    existing = loops_of(file)
    return existing[0] if existing else run("losetup", "--find", "--show", str(file))


def detach_loop(file: Path) -> None:
    for device in loops_of(file):
        run("losetup", "--detach", device)


def release_stray(mountpoint: Path, device: str) -> None:
    """A mount no state entry explains (a crash between mount and state write): unmount it, free its loop."""
    unmount(mountpoint)
    if device.startswith("/dev/loop"):
        run("losetup", "--detach", device)


def wait_for_disk(path: Path, seconds: float = BY_ID_WAIT_SECONDS) -> str:
    ends = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > ends:
            raise DeviceError(f"{path} did not appear within {seconds:g} s of the attach")
        time.sleep(0.1)
    return str(path.resolve())


def filesystem_of(device: str) -> str:
    """The filesystem type on the device, or "" when `blkid` finds none (exit status 2)."""
    done = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], capture_output=True, text=True,
                          timeout=COMMAND_SECONDS)
    if done.returncode == 2:
        return ""
    if done.returncode != 0:
        raise DeviceError(f"blkid {device}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def make_filesystem(device: str, fstype: str, label: str) -> None:
    # -E nodiscard / -K: the file is sparse already; discarding it all first only costs time.
    extra = ["-q", "-E", "nodiscard", "-L", label[:16]] if fstype == "ext4" else ["-q", "-K", "-L", label[:12]]
    run(f"mkfs.{fstype}", *extra, device)


def mounted_at(mountpoint: Path) -> bool:
    target = str(mountpoint)
    with open("/proc/self/mountinfo") as table:
        return any(_unescape(line.split()[4]) == target for line in table)


def mounts_under(root: Path) -> dict[Path, str]:
    """Mount points below root and the device mounted on each."""
    prefix = str(root).rstrip("/") + "/"
    found = {}
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields, _, after = line.partition(" - ")
            point = _unescape(fields.split()[4])
            if point.startswith(prefix):
                found[Path(point)] = after.split()[1]
    return found


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount(device: str, mountpoint: Path) -> None:
    mountpoint.mkdir(parents=True, exist_ok=True)
    if not mounted_at(mountpoint):
        run("mount", device, str(mountpoint))


def unmount(mountpoint: Path) -> None:
    if mounted_at(mountpoint):
        run("umount", str(mountpoint))
    with contextlib.suppress(OSError):  # not empty: something wrote beside the mount; leave it for a person
        mountpoint.rmdir()


def used_bytes(mountpoint: Path) -> int | None:
    try:
        stats = os.statvfs(mountpoint)
    except OSError:
        return None
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize
