"""Snapshots on the `sim` hypervisor, with real files: an overlay is a sparse file of its backing file's size
whose holes read as the backing file (as a sim linked clone's disk is), and a commit copies the overlay's data
regions onto its backing file, which is what qemu-img commit does to a qcow2 overlay."""

import os
from pathlib import Path

from . import files
from .base import DiskLayer, DriverError


def _overlay(layer: DiskLayer) -> None:
    if layer.overlay.exists():
        return  # made by an earlier run
    if not layer.backing.is_file():
        raise DriverError(f"disk file {layer.backing} does not exist")
    files.create_sparse(layer.overlay, layer.backing.stat().st_size)


class SimSnapshots:
    def snapshot_disks(self, vm, layers: list[DiskLayer]) -> None:
        self._pause()
        self._domain(vm)
        made = []
        try:
            for layer in layers:
                if not layer.overlay.exists():
                    _overlay(layer)
                    made.append(layer.overlay)
        except BaseException:
            for path in made:  # all disks or none, as libvirt's atomic snapshot
                files.remove(path)
            raise

    def revert_disks(self, vm, layers: list[DiskLayer]) -> None:
        self._pause()
        if self._domain(vm).power_state != "off":
            raise DriverError(f"VM {vm.name} must be off to revert its disks")
        for layer in layers:
            _overlay(layer)

    def commit_disk(self, vm, layer: DiskLayer, active: bool, above: list[Path]) -> None:
        """`above` needs nothing: a sim overlay names no backing file."""
        self._pause()
        top, base = layer.overlay, layer.backing
        if not top.is_file():
            return  # committed and removed by an earlier run
        if not base.is_file():
            raise DriverError(f"disk file {base} does not exist")
        size = top.stat().st_size
        with open(top, "rb") as source, open(base, "r+b") as target:
            for start, end in files.data_extents(source.fileno(), size):
                position = start
                while position < end:
                    written = os.copy_file_range(source.fileno(), target.fileno(), end - position, position, position)
                    if written == 0:
                        break
                    position += written
            target.flush()
            os.fsync(target.fileno())

    def disk_usage(self, path: Path) -> int:
        try:
            return path.stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def attach_readonly_layer(self, vm, layer: DiskLayer, serial: str) -> None:
        _overlay(layer)
        self.attach_disk(vm, layer.overlay, serial)
