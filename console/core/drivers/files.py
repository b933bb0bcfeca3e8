"""Disk files in a storage container: sparse creation and sparse-aware copies, shared by the drivers."""

import os
from pathlib import Path

from .base import DriverError, ProgressCallback

CHUNK = 4 * 1024 * 1024
ISO9660_MAGIC_OFFSET = 16 * 2048 + 1
QCOW2_MAGIC = b"QFI\xfb"
QCOW2_HEADER_BYTES = 32  # magic, version, backing file offset and length, cluster bits, virtual size


def create_sparse(path: Path, size_bytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        handle.truncate(size_bytes)


def data_extents(fd: int, size: int):
    """(start, end) of the regions holding data; holes are skipped so a copy stays sparse."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        offset = end


def copy_sparse(source: Path, target: Path, progress: ProgressCallback) -> None:
    """Copy through a `.part` file renamed at the end, so a crash never leaves a file that looks done."""
    if target.exists():
        return
    if not source.is_file():
        raise DriverError(f"source disk {source} does not exist")
    partial = target.with_name(target.name + ".part")
    partial.parent.mkdir(parents=True, exist_ok=True)
    size = source.stat().st_size
    with open(source, "rb") as src, open(partial, "wb") as dst:
        dst.truncate(size)
        for start, end in data_extents(src.fileno(), size):
            position = start
            while position < end:
                length = min(CHUNK, end - position)
                written = os.copy_file_range(src.fileno(), dst.fileno(), length, position, position)
                if written == 0:
                    break
                position += written
                progress(position / size if size else 1.0)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(partial, target)
    progress(1.0)


def remove(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".part")):
        candidate.unlink(missing_ok=True)


def is_iso9660(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(ISO9660_MAGIC_OFFSET)
            return handle.read(5) == b"CD001"
    except OSError:
        return False


def qcow2_virtual_size(path: Path) -> int | None:
    """The size of the disk a qcow2 file holds (its header's big-endian u64 at byte 24), far above the file's
    own size; None for any other file. Only for a file known to be qcow2 (an image inspected on arrival): a
    file's first bytes never decide how it is read."""
    with open(path, "rb") as handle:
        header = handle.read(QCOW2_HEADER_BYTES)
    if len(header) == QCOW2_HEADER_BYTES and header[:4] == QCOW2_MAGIC:
        return int.from_bytes(header[24:32], "big")
    return None
