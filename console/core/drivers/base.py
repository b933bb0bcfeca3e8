from collections.abc import Callable
from pathlib import Path
from typing import Protocol

# Called with a fraction in [0, 1] while a long operation (a disk copy) goes on.
ProgressCallback = Callable[[float], None]

POWER_TRANSITIONS = {
    # action: (states it applies to, resulting state)
    "power-on": ({"off", "paused"}, "on"),
    "power-off": ({"on", "paused"}, "off"),
    "shutdown": ({"on"}, "off"),
    "reset": ({"on"}, "on"),
    "reboot": ({"on"}, "on"),
}
POWER_ACTIONS = tuple(POWER_TRANSITIONS)

# A VM's CD-ROM drives, by slot: 0 to 3 on the IDE bus, which guests without an AHCI or SCSI driver still
# read but which takes a new drive only while the VM is off; 4 and up on a virtio-scsi bus, which takes one
# while the VM runs (hot plug).
COLD_CDROM_SLOTS = 4
CDROM_SLOTS = 12


def new_cdrom_slot(used: set[int], running: bool) -> int | None:
    """The slot a new CD-ROM drive takes: the lowest free one, and on a running VM the lowest free one that
    can be hot-plugged; None when there is none."""
    first = COLD_CDROM_SLOTS if running else 0
    return next((slot for slot in range(first, CDROM_SLOTS) if slot not in used), None)


class DriverError(Exception):
    """The hypervisor refused or failed an operation; the message is shown to the administrator."""


class Driver(Protocol):
    """What the console asks of a hypervisor. Every call is idempotent: repeating it after a crash
    leaves the same result, which is what lets a requeued task finish what was started."""

    def create(self, vm) -> None: ...
    def delete(self, vm) -> None: ...
    def power(self, vm, action: str) -> str: ...
    def state(self, vm) -> str: ...
    def states(self, vms: list) -> dict: ...
    # Disk formats ("raw" or "qcow2") are always named by the caller, from the database: never guessed from
    # a file's bytes, which the guest writes.
    def create_disk(self, path: Path, size_bytes: int, disk_format: str = "raw") -> None: ...
    def clone_disk(self, source: Path, target: Path, linked: bool, progress: ProgressCallback,
                   source_format: str = "raw") -> None: ...
    def delete_disk(self, path: Path) -> None: ...
    def insert_cdrom(self, vm, slot: int, iso_path: Path) -> None: ...
    def eject_cdrom(self, vm, slot: int) -> None: ...
    def attach_disk(self, vm, path: Path, serial: str, disk_format: str = "raw") -> None: ...
    def detach_disk(self, vm, serial: str) -> None: ...
    def agent_channel_path(self, vm) -> Path | None: ...
    # Asks nothing of the hypervisor: what its buses allow (the web tier calls it to choose a slot).
    def new_cdrom_slot(self, used: set[int], running: bool) -> int | None: ...
