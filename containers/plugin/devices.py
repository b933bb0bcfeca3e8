"""The block-device side: disk files mounted through loop devices (a registered machine), virtio disks by
serial (a VM), filesystems made only where none is found, mounts, and growing a filesystem to its disk.

A volume's source is what the filesystem is made on and mounted from: the disk file itself (`mount -o loop`
sets up a loop device that the kernel frees at unmount) or the VM's block device."""

import contextlib
import ctypes
import logging
import os
import stat
import struct
import subprocess
import time
from pathlib import Path

BY_ID_WAIT_SECONDS = 10.0  # udev names a hot-plugged virtio disk shortly after the hypervisor adds it
COMMAND_SECONDS = 120.0
GROW_STEP_BYTES = 1024**2  # a disk this much larger than its filesystem is worth growing into
SIGNATURE_BYTES = 64 * 1024  # where the filesystems we make (and most others) say what they are
log = logging.getLogger("facet-volume-plugin")
_libc = ctypes.CDLL(None, use_errno=True)


class DeviceError(Exception):
    pass


def run(*command: str, ok: tuple[int, ...] = (0,)) -> str:
    began = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_SECONDS)
        log.debug("%s: %.1f ms", " ".join(command), (time.monotonic() - began) * 1000)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceError(f"{command[0]}: {exc}") from None
    if done.returncode not in ok:
        said = " ".join(line for line in (done.stderr + done.stdout).splitlines() if not line.startswith(command[0]))
        raise DeviceError(f"{' '.join(command)}: {said.strip() or done.returncode}")
    return done.stdout.strip()


def loops_of(file: Path) -> list[str]:
    """The loop devices over this file, as `losetup --associated` finds them, without its process. The kernel
    names the backing file by its canonical path; the console's path may go through a symlink."""
    canonical = os.path.realpath(file)
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):  # a loop device freed while we look
            if backing.read_text().strip() == canonical:
                found.append(f"/dev/{backing.parent.parent.name}")
    return found


def detach_loops(file: Path) -> None:
    """Free loop devices left over this file (the kernel frees the one `mount -o loop` made at unmount; a crash
    in between, or an older plugin, can leave one)."""
    for device in loops_of(file):
        try:
            run("losetup", "--detach", device)
        except DeviceError:
            if loops_of(file):
                raise


def disk_file(path: Path) -> str:
    if not path.is_file():
        raise DeviceError(f"disk file {path} is missing (is the storage container mounted at the same path?)")
    return str(path)


def wait_for_disk(path: Path, seconds: float = BY_ID_WAIT_SECONDS) -> str:
    ends = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > ends:
            raise DeviceError(f"{path} did not appear within {seconds:g} s of the attach")
        time.sleep(0.1)
    return str(path.resolve())


def filesystem_of(source: str) -> str:
    """The filesystem type on the source, or "" when there is none."""
    try:
        found = os.stat(source)
        if stat.S_ISREG(found.st_mode) and found.st_blocks == 0 and _zeros_at_start(source):
            # A disk file with no block allocated is all zeros: nothing to find (and no blkid to run). Not so a
            # block device, whose blocks always count 0; and the start is read too, where ext4's and xfs's
            # signatures are, for a network filesystem that counts blocks loosely.
            return ""
    except OSError as exc:
        raise DeviceError(f"{source}: {exc.strerror}") from None
    done = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", source], capture_output=True, text=True,
                          timeout=COMMAND_SECONDS)
    if done.returncode == 2:  # blkid's "nothing found"
        return ""
    if done.returncode != 0:
        raise DeviceError(f"blkid {source}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def _zeros_at_start(path: str) -> bool:
    with open(path, "rb") as disk:
        return not disk.read(SIGNATURE_BYTES).strip(b"\0")


def make_filesystem(source: str, fstype: str, label: str) -> None:
    # -E nodiscard / -K: the disk is sparse already; discarding it all first only costs time.
    extra = ["-q", "-E", "nodiscard", "-L", label[:16]] if fstype == "ext4" else ["-q", "-K", "-L", label[:12]]
    run(f"mkfs.{fstype}", *extra, source)


def mounted_device(mountpoint: Path) -> str:
    """The device mounted at mountpoint, or ""."""
    return mounts_under(mountpoint.parent).get(mountpoint, "")


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


def mount(source: str, mountpoint: Path, loop: bool) -> str:
    """Mount (unless mounted already); answers the device mounted there."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    device = mounted_device(mountpoint)
    if not device:
        run("mount", *(["-o", "loop"] if loop else []), source, str(mountpoint))
        device = mounted_device(mountpoint)
    return device


def unmount(mountpoint: Path) -> None:
    # umount(2) itself, not umount(8): the same call without a process (which costs more than the call).
    if mounted_device(mountpoint) and _libc.umount2(os.fsencode(mountpoint), 0) != 0:
        raise DeviceError(f"umount {mountpoint}: {os.strerror(ctypes.get_errno())}")
    with contextlib.suppress(OSError):  # not empty: something wrote beside the mount; leave it for a person
        mountpoint.rmdir()


def release_stray(mountpoint: Path, device: str) -> None:
    """A mount no state entry explains (a crash between mount and state write): unmount it, free its loop."""
    unmount(mountpoint)
    if device.startswith("/dev/loop") and Path(f"/sys/block/{Path(device).name}/loop").exists():
        run("losetup", "--detach", device)


def used_bytes(mountpoint: Path) -> int | None:
    try:
        stats = os.statvfs(mountpoint)
    except OSError:
        return None
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def size_of(device: str) -> int:
    """A block device's size in bytes, as the kernel sees it now (a disk file's, for a file)."""
    if Path(device).is_file():
        return os.stat(device).st_size
    name = Path(device).resolve().name
    return int(Path(f"/sys/class/block/{name}/size").read_text()) * 512


def filesystem_size(source: str, fstype: str) -> int:
    """The size the filesystem on source spans, read from its superblock (0 when it is not there)."""
    with open(source, "rb") as disk:
        head = disk.read(2048)
    if fstype == "xfs":
        if head[:4] != b"XFSB":
            return 0
        block_size, blocks = struct.unpack_from(">IQ", head, 4)
        return block_size * blocks
    if not fstype.startswith("ext"):
        return 0  # a filesystem we did not make: left as it is
    superblock = head[1024:]
    if len(superblock) < 0x154 or struct.unpack_from("<H", superblock, 0x38)[0] != 0xEF53:
        return 0
    low, = struct.unpack_from("<I", superblock, 0x04)
    log_size, = struct.unpack_from("<I", superblock, 0x18)
    wide = struct.unpack_from("<I", superblock, 0x60)[0] & 0x80  # the 64bit feature: a high half of the count
    high = struct.unpack_from("<I", superblock, 0x150)[0] if wide else 0
    return ((high << 32) | low) * (1024 << log_size)


def grow_unmounted(source: str, fstype: str, filesystem_bytes: int) -> int:
    """Grow an ext filesystem that is not mounted to its disk (xfs grows only mounted); answers its size.
    Offline, resize2fs needs no more than write access to the disk (online it needs CAP_SYS_RESOURCE)."""
    size = size_of(source)
    if not fstype.startswith("ext") or not filesystem_bytes or size - filesystem_bytes < GROW_STEP_BYTES:
        return filesystem_bytes
    log.info("growing the filesystem on %s from %d to %d bytes", source, filesystem_bytes, size)
    run("e2fsck", "-f", "-p", source, ok=(0, 1))  # resize2fs insists on a fresh check; 1: errors corrected
    run("resize2fs", source)
    return size


def fit(device: str, disk: Path, loop: bool, mountpoint: Path, fstype: str, filesystem_bytes: int) -> None:
    """Grow a mounted filesystem (online) to its disk after the disk grew.

    A loop device keeps the size its file had when it was set up until told to read it again."""
    if loop and disk.stat().st_size > size_of(device):
        run("losetup", "--set-capacity", device)
    size = size_of(device)
    if filesystem_bytes and size - filesystem_bytes >= GROW_STEP_BYTES:
        log.info("growing the filesystem at %s from %d to %d bytes", mountpoint, filesystem_bytes, size)
        if fstype == "xfs":
            run("xfs_growfs", str(mountpoint))
        else:
            run("resize2fs", device)
