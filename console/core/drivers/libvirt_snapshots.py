"""Snapshots on libvirt (QEMU): disk-only, external qcow2 overlays that Facet makes with qemu-img and names,
so that their files are always the database's (libvirt keeps no snapshot metadata: `NO_METADATA`).

- A running domain takes its overlays in one atomic `snapshotCreateXML(DISK_ONLY|REUSE_EXT|ATOMIC)`; a stopped
  one gets its definition's disk sources changed. Either way the persistent definition names the overlays.
- A commit on a running domain whose chain holds the overlay is QEMU's (`virsh blockcommit`, pivoting when the
  overlay is the active layer); anything else is `qemu-img commit`.
- The SSR disk: a new overlay over a snapshot's file, hot-plugged read-only."""

import functools
import time
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement

import libvirt
from defusedxml.ElementTree import fromstring

from . import files, qemu_img
from .base import DiskLayer, DriverError

COMMIT_WAIT_SECONDS = 3600
COMMIT_POLL_SECONDS = 0.2
SNAPSHOT_FLAGS = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                  | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)


def _libvirt_errors(method):
    """A libvirt failure in any call a method makes reaches the console as a DriverError."""
    @functools.wraps(method)
    def wrapper(self, vm, *args, **kwargs):
        try:
            return method(self, vm, *args, **kwargs)
        except libvirt.libvirtError as exc:
            raise DriverError(f"{method.__name__.replace('_', ' ')} of VM {vm.name} failed on {self.uri}: "
                              f"{exc.get_error_message()}") from None
    return wrapper


def _make_overlay(layer: DiskLayer) -> None:
    if layer.overlay.exists():
        return  # made by an earlier run (an empty overlay either way)
    if not layer.backing.is_file():
        raise DriverError(f"disk file {layer.backing} does not exist")
    layer.overlay.parent.mkdir(parents=True, exist_ok=True)
    qemu_img.run("create", "-q", "-f", "qcow2", "-b", str(layer.backing.resolve()), "-F",
                 qemu_img.checked_format(layer.backing_format), str(layer.overlay))


def _source(disk) -> str:
    source = disk.find("source")
    return source.get("file", "") if source is not None else ""


def _chain(disk) -> list[str]:
    """The files of a live disk, from its active layer down its backing chain."""
    found, element = [], disk
    while element is not None and element.find("source") is not None:
        found.append(_source(element))
        element = element.find("backingStore")
    return found


def _set_source(disk, path: Path, disk_format: str) -> None:
    disk.find("source").set("file", str(path))
    disk.find("driver").set("type", qemu_img.checked_format(disk_format))
    for backing in disk.findall("backingStore"):  # probed again by libvirt from the new file
        disk.remove(backing)


class LibvirtSnapshots:
    def _target_of(self, index: int) -> str:
        from .libvirt import _virtio_target  # the same naming as the domain's definition

        return _virtio_target(index)

    def _disk_by_target(self, devices, target: str):
        return next((d for d in devices.iter("disk") if d.find("target").get("dev") == target), None)

    def _redefine_sources(self, vm, domain, sources: dict[str, tuple[Path, str]]) -> None:
        """Point the persistent definition's disks (by target) at new files, when they do not already."""
        from .libvirt import _xml

        definition = fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
        changed = False
        for target, (path, disk_format) in sources.items():
            disk = self._disk_by_target(definition.find("devices"), target)
            if disk is None:
                raise DriverError(f"VM {vm.name} has no disk {target} in its definition")
            if _source(disk) != str(path) or disk.find("driver").get("type") != disk_format:
                _set_source(disk, path, disk_format)
                changed = True
        if changed:
            self._call("changing the disks' files", vm, lambda: self.connection.defineXML(_xml(definition)))

    @_libvirt_errors
    def snapshot_disks(self, vm, layers: list[DiskLayer]) -> None:
        domain = self._domain(vm)
        made = [layer.overlay for layer in layers if not layer.overlay.exists()]
        targets = {self._target_of(layer.index): layer for layer in layers}
        try:
            for layer in layers:
                _make_overlay(layer)
            if domain.isActive():
                live = fromstring(self._call("reading the devices", vm, lambda: domain.XMLDesc(0))).find("devices")
                pending = {t: layer for t, layer in targets.items()
                           if _source(self._disk_by_target(live, t)) != str(layer.overlay)}
                if pending:
                    xml = self._snapshot_xml(live, pending)
                    self._call("taking the disk snapshot", vm,
                               lambda: domain.snapshotCreateXML(xml, SNAPSHOT_FLAGS))
        except BaseException:
            for path in made:  # ATOMIC: the running guest took none of them
                files.remove(path)
            raise
        self._redefine_sources(vm, domain, {t: (layer.overlay, "qcow2") for t, layer in targets.items()})

    def _snapshot_xml(self, live_devices, layers: dict[str, DiskLayer]) -> str:
        from .libvirt import _xml

        snapshot = Element("domainsnapshot")
        disks = SubElement(snapshot, "disks")
        for disk in live_devices.iter("disk"):
            target = disk.find("target").get("dev")
            if target in layers:
                element = SubElement(disks, "disk", name=target, snapshot="external", type="file")
                SubElement(element, "driver", type="qcow2")
                SubElement(element, "source", file=str(layers[target].overlay))
            else:  # CD-ROMs, volume groups, SSR disks: not the VM's own disks
                SubElement(disks, "disk", name=target, snapshot="no")
        return _xml(snapshot)

    @_libvirt_errors
    def revert_disks(self, vm, layers: list[DiskLayer]) -> None:
        domain = self._domain(vm)
        if domain.isActive():
            raise DriverError(f"VM {vm.name} must be off to revert its disks")
        for layer in layers:
            _make_overlay(layer)
        self._redefine_sources(vm, domain, {self._target_of(layer.index): (layer.overlay, "qcow2")
                                            for layer in layers})

    @_libvirt_errors
    def commit_disk(self, vm, layer: DiskLayer, active: bool, above: list[Path]) -> None:
        domain = self._domain(vm)
        target = self._target_of(layer.index)
        top, base = layer.overlay, layer.backing
        chain = []
        if domain.isActive():
            live = self._disk_by_target(fromstring(domain.XMLDesc(0)).find("devices"), target)
            chain = _chain(live) if live is not None else []
        if active and chain and chain[0] == str(base):
            pass  # pivoted by an earlier run
        elif str(top) in chain:
            self._block_commit(vm, domain, target, top, base, active=chain[0] == str(top))
        elif top.is_file():  # a stopped VM, or a branch of its tree the guest does not run on
            qemu_img.run("commit", "-q", "-d", "-f", "qcow2", str(top))
        for path in above:
            if str(path) not in chain:  # QEMU rebased those of the running chain itself
                qemu_img.run("rebase", "-q", "-u", "-f", "qcow2", "-b", str(base.resolve()), "-F",
                             qemu_img.checked_format(layer.backing_format), str(path))
        if active:
            self._redefine_sources(vm, domain, {target: (base, layer.backing_format)})

    def _block_commit(self, vm, domain, target: str, top: Path, base: Path, active: bool) -> None:
        """QEMU writes `top` into `base` while the guest runs; the active layer is then pivoted to `base`,
        and a lower layer's overlay gets `base` as its new backing file."""
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE if active else 0
        self._call(f"committing {top.name} into {base.name}", vm, lambda: domain.blockCommit(
            target, str(base), None if active else str(top), 0, flags))
        deadline = time.monotonic() + COMMIT_WAIT_SECONDS
        while True:
            job = self._call("reading the commit job", vm, lambda: domain.blockJobInfo(target, 0))
            if not job:
                return  # a lower layer's commit ended by itself
            if active and job["end"] and job["cur"] == job["end"] and self._ready_to_pivot(domain, target):
                self._call("pivoting to the committed file", vm, lambda: domain.blockJobAbort(
                    target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT))
                return
            if time.monotonic() > deadline:
                self._call("cancelling the commit", vm, lambda: domain.blockJobAbort(target, 0))
                raise DriverError(f"committing {top.name} of VM {vm.name} took over {COMMIT_WAIT_SECONDS} s; "
                                  "cancelled, nothing merged")
            time.sleep(COMMIT_POLL_SECONDS)

    def _ready_to_pivot(self, domain, target: str) -> bool:
        """Whether libvirt has seen QEMU's job ready (the live disk's `<mirror ready='yes'>`): `cur == end` can
        come first, and a pivot before libvirt saw it fails ("not ready for pivot yet")."""
        disk = self._disk_by_target(fromstring(domain.XMLDesc(0)).find("devices"), target)
        mirror = disk.find("mirror") if disk is not None else None
        return mirror is not None and mirror.get("ready") == "yes"

    def disk_usage(self, path: Path) -> int:
        try:
            return path.stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    @_libvirt_errors
    def attach_readonly_layer(self, vm, layer: DiskLayer, serial: str) -> None:
        from .libvirt import _disk_element, _disk_with_serial, _virtio_target, _xml

        domain = self._domain(vm)
        if not domain.isActive():
            raise DriverError(f"VM {vm.name} is not running")
        live = fromstring(domain.XMLDesc(0)).find("devices")
        if _disk_with_serial(live, serial) is not None:
            return
        _make_overlay(layer)
        used = {d.find("target").get("dev") for d in live.iter("disk")} | {
            d.find("target").get("dev") for d in self._devices(domain).iter("disk")}
        target = next(_virtio_target(i) for i in range(len(used) + 1) if _virtio_target(i) not in used)
        disk = _disk_element(layer.overlay, "qcow2", target, serial)
        SubElement(disk, "readonly")
        try:
            self._call(f"attaching disk {serial}", vm, lambda: domain.attachDeviceFlags(
                _xml(disk), libvirt.VIR_DOMAIN_AFFECT_LIVE))
        except DriverError:
            files.remove(layer.overlay)
            raise
