from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .insight import ConsoleTarget

# Called with a fraction in [0, 1] while a long operation (a disk copy) goes on.
ProgressCallback = Callable[[float], None]

POWER_TRANSITIONS = {
    # action: (states it applies to, resulting state)
    "power-on": ({"off", "paused"}, "on"),
    "power-off": ({"on", "paused"}, "off"),
    "shutdown": ({"on"}, "off"),
    "reset": ({"on"}, "on"),
    "reboot": ({"on"}, "on"),
    "pause": ({"on"}, "paused"),
    "resume": ({"paused"}, "on"),
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
    # Called on the VM's current host: the domain goes to `target` (a Host), live while it runs, and is
    # defined there and no longer here once this returns (idempotent: a domain already moved is left).
    def migrate(self, vm, target) -> None: ...
    # Day-2 changes of a defined VM (console/services/vm_edit.py, vm_devices.py, adopt.py). Each changes the
    # definition, and the running guest too where the hypervisor can; the disk and NIC are found by their
    # file path and MAC, which the console keeps unique.
    def set_cpu_memory(self, vm, vcpus: int, memory_bytes: int, max_vcpus: int, max_memory_bytes: int) -> bool:
        """True when the running guest has the new counts (or the VM is off), False when only the definition
        does and they apply at the next power cycle."""
        ...
    def rename(self, vm) -> None: ...
    def set_boot_order(self, vm, order: list[str]) -> None: ...
    def plug_disk(self, vm, path: Path, disk_format: str, serial: str) -> None: ...
    def unplug_disk(self, vm, path: Path) -> None: ...
    def grow_disk(self, vm, path: Path, disk_format: str, size_bytes: int) -> None: ...
    def plug_nic(self, vm, nic) -> None: ...
    def unplug_nic(self, vm, mac: str) -> None: ...
    def set_nic_network(self, vm, nic) -> None: ...
    def domains(self, host) -> list[dict]:
        """Every domain the hypervisor of `host` holds, as `adopt.py` reads it: uuid, name, state, vcpus, memory_bytes,
        disks [{path, format, device}], nics [{mac, network}], problems [what Facet cannot represent]."""
        ...
    # Asks nothing of the hypervisor: what its buses allow (the web tier calls it to choose a slot).
    def new_cdrom_slot(self, used: set[int], running: bool) -> int | None: ...
    # What a running VM shows (insight.py; libvirt_insight.py and sim_insight.py): where its console `kind`
    # ("vnc" or "serial") is; what its serial port printed lately (at most `limit` bytes, the newest); and the
    # usage counters of every running VM among `vms` in one call to the hypervisor.
    def console_target(self, vm, kind: str) -> ConsoleTarget: ...
    def serial_log(self, vm, limit: int) -> bytes: ...
    def domain_counters(self, vms: list) -> dict: ...
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
