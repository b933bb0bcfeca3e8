from collections.abc import Callable
from dataclasses import dataclass
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


class DriverError(Exception):
    """The hypervisor refused or failed an operation; the message is shown to the administrator."""


@dataclass(frozen=True)
class DiskLayer:
    """One disk's step in a snapshot operation: the VM's disk `index` gets the new qcow2 `overlay`, backed by
    `backing` (of `backing_format`, as the database records it)."""

    index: int
    backing: Path
    backing_format: str
    overlay: Path


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
    # Snapshots (disk-only, external qcow2 overlays; libvirt_snapshots.py, sim_snapshots.py). Each is idempotent.
    # The VM's disks move to the layers' overlays, made over their current files (live and atomic when it runs).
    def snapshot_disks(self, vm, layers: list[DiskLayer]) -> None: ...
    # A VM that is off: its disks move to new overlays over a snapshot's files (the old top files are the caller's).
    def revert_disks(self, vm, layers: list[DiskLayer]) -> None: ...
    # `layer.overlay`'s data is written into its backing file; when the overlay is the VM's disk now (`active`),
    # the disk moves to the backing file, else the files built on the overlay (`above`) are rebased onto it.
    # A running VM's chain is committed by QEMU, anything else by qemu-img.
    def commit_disk(self, vm, layer: DiskLayer, active: bool, above: list[Path]) -> None: ...
    def disk_usage(self, path: Path) -> int: ...
    # A read-only disk (a new overlay over `layer.backing`, so the snapshot's own file is never opened for write).
    def attach_readonly_layer(self, vm, layer: DiskLayer, serial: str) -> None: ...
