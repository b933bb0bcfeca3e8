"""What this plugin has mounted, and the detaches the console has not heard of yet, kept in a small JSON file
replaced atomically on every change, so that a restart (after a crash or a reboot) knows what to mount again,
what to clean up and what to tell the console.

The file is not flushed to disk (fsync): that cost about 8 ms per change here, twice on every Mount and
Unmount. A crashed plugin loses nothing by it (the kernel holds the written file); only a crash of the machine
can, and after one nothing is mounted and the console's record of what is attached here is the one that counts
(see VolumeDriver.reconcile). A file that cannot be read is for the driver to judge (StateUnreadable)."""

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


class StateUnreadable(Exception):
    pass


@dataclass
class Mounted:
    device: str  # /dev/loopN or /dev/vdX, once mounted
    mountpoint: str
    disk: str  # the disk file (loop) or /dev/disk/by-id path (VM)
    loop: bool
    fstype: str
    callers: list[str] = field(default_factory=list)  # Docker's mount ids: one per container using it
    size_bytes: int = 0  # the disk size the filesystem was last grown to fill
    # Attached here by its Create for the Mount that comes next, and released if none comes by then (this
    # process's monotonic clock: a restart releases what is held). 0 once a container mounts it.
    held_until: float = 0.0

    @property
    def mounted_at(self) -> str:
        """Where a container finds it: nowhere while it is only held."""
        return "" if self.held_until else self.mountpoint


@dataclass
class State:
    boot_id: str = ""
    volumes: dict[str, Mounted] = field(default_factory=dict)
    detaches: dict[str, int | None] = field(default_factory=dict)  # released here, not yet told: name -> used bytes

    @classmethod
    def load(cls, path: Path) -> "State":
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        known = {entry.name for entry in fields(Mounted)}  # a newer plugin's fields are left to it
        try:
            data = json.loads(text)
            return cls(boot_id=data.get("boot_id", ""),
                       volumes={name: Mounted(**{key: value for key, value in entry.items() if key in known})
                                for name, entry in data.get("volumes", {}).items()},
                       detaches=data.get("detaches", {}))
        except (ValueError, TypeError, AttributeError) as exc:
            raise StateUnreadable(f"state file {path} is unreadable ({exc})") from None

    def save(self, path: Path) -> None:
        """Write a new file and rename it over the old one: a crash leaves the old state or the new, whole."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".new")
        data = json.dumps({"boot_id": self.boot_id, "volumes": {n: asdict(m) for n, m in self.volumes.items()},
                           "detaches": self.detaches}, indent=1, sort_keys=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.replace(partial, path)


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
