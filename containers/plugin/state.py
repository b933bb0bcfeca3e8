"""What this plugin has mounted, and the detaches the console has not heard of yet, kept in a small JSON file
replaced atomically on every change, so that a restart (after a crash or a reboot) knows what to mount again,
what to clean up and what to tell the console."""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Mounted:
    device: str  # /dev/loopN or /dev/vdX, once mounted
    mountpoint: str
    disk: str  # the disk file (loop) or /dev/disk/by-id path (VM)
    loop: bool
    fstype: str
    callers: list[str] = field(default_factory=list)  # Docker's mount ids: one per container using it
    size_bytes: int = 0  # the disk size the filesystem was last grown to fill


@dataclass
class State:
    boot_id: str = ""
    volumes: dict[str, Mounted] = field(default_factory=dict)
    detaches: dict[str, int | None] = field(default_factory=dict)  # released here, not yet told: name -> used bytes

    @classmethod
    def load(cls, path: Path) -> "State":
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        return cls(boot_id=data.get("boot_id", ""),
                   volumes={name: Mounted(**entry) for name, entry in data.get("volumes", {}).items()},
                   detaches=data.get("detaches", {}))

    def save(self, path: Path) -> None:
        """Write a new file and rename it over the old one: a crash leaves the old state or the new, whole."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".new")
        data = json.dumps({"boot_id": self.boot_id, "volumes": {n: asdict(m) for n, m in self.volumes.items()},
                           "detaches": self.detaches}, indent=1, sort_keys=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
