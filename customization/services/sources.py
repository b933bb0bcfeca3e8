"""Where a script comes from: pasted text, an upload, a file in a storage container, or the library.
Whatever the source, its bytes are read here, bounded by the size limit, before anything is stored."""

import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from console.core.errors import InvalidRequest, TooLarge
from console.models import Cluster, StorageContainer

from .content import size_limit

SCHEME = "facet://"
CHUNK = 64 * 1024


def read_bounded(stream: BinaryIO, field: str, declared_length: int | None = None) -> bytes:
    """Read at most the size limit (plus one byte, to tell "too large") from a stream."""
    limit = size_limit()
    if declared_length is not None and declared_length > limit:
        raise TooLarge({field: [f"{declared_length} bytes is over the limit of {limit // 1024} KiB"]})
    data = bytearray()
    while len(data) <= limit:
        chunk = stream.read(min(CHUNK, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise TooLarge({field: [f"the script is over the limit of {limit // 1024} KiB"]})
    return bytes(data)


def parse_storage_path(value: str, field: str) -> tuple[str, str]:
    """`facet://CONTAINER/path/in/it` as (storage container name, relative path), refusing `..` outright."""
    if not value.startswith(SCHEME):
        raise InvalidRequest({field: [f"give a path as {SCHEME}CONTAINER/path/to/file"]})
    storage_container_name, _, relative = value[len(SCHEME):].partition("/")
    parts = PurePosixPath(relative).parts
    if not storage_container_name or not relative or relative.startswith("/"):
        raise InvalidRequest({field: [f"give a path as {SCHEME}CONTAINER/path/to/file"]})
    if ".." in parts or "\x00" in relative:
        raise InvalidRequest({field: ["a storage path may not contain '..'"]})
    return storage_container_name, relative


def read_storage_path(value: str, cluster: Cluster, field: str = "customization.storage_path") -> bytes:
    """The bytes of a file inside a storage container; symlinks that lead out of it are refused too."""
    name, relative = parse_storage_path(value, field)
    storage_container = StorageContainer.objects.filter(cluster=cluster, name=name).first()
    if storage_container is None:
        raise InvalidRequest({field: [f"cluster {cluster.name} has no storage container {name!r}"]})
    try:
        target = storage_container.resolve(relative)  # follows symlinks: one leading out fails here
    except ValueError:
        raise InvalidRequest({field: [f"{value} leads out of storage container {name}"]}) from None
    root = Path(storage_container.path).resolve()
    try:
        # O_NOFOLLOW and the check of what was opened close the window in which a symlink could be swapped
        # in; O_NONBLOCK keeps a FIFO from blocking us.
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidRequest({field: [f"cannot read {value}: {exc.strerror}"]}) from None
    with os.fdopen(fd, "rb") as handle:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if root not in opened.parents:
            raise InvalidRequest({field: [f"{value} leads out of storage container {name}"]})
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRequest({field: [f"{value} is not a regular file"]})
        return read_bounded(handle, field, info.st_size)

