"""The `sim` hypervisor: domains live in the database and change state at once, while their disks and
CD-ROM media are real files, so everything around the hypervisor (copies, ISOs, cleanup) is real.
`sim://?delay=SECONDS` makes every call take that long, to watch progress or kill a worker mid-task."""

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from django.conf import settings

from ..models import SimDomain
from . import files
from .base import POWER_TRANSITIONS, DriverError, ProgressCallback, new_cdrom_slot
from .sim_devices import SimDevices, definition_of
from .sim_insight import SimInsight
from .sim_snapshots import SimSnapshots


class SimDriver(SimDevices, SimInsight, SimSnapshots):
    def __init__(self, uri: str) -> None:
        query = parse_qs(urlsplit(uri).query)
        self.delay = float(query.get("delay", ["0"])[0])

    def _pause(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    def _domain(self, vm) -> SimDomain:
        try:
            return SimDomain.objects.get(uuid=vm.uuid)
        except SimDomain.DoesNotExist:
            raise DriverError(f"VM {vm.name} is not defined on the hypervisor") from None

    def create(self, vm) -> None:
        """Defined with its CD-ROMs' media, as libvirt defines a domain from the VM's rows."""
        self._pause()
        host_name = vm.host.name if vm.host else ""
        domain = SimDomain.objects.filter(uuid=vm.uuid).first()
        if domain is None:  # (one task's run at a time defines its VM: no other creates it meanwhile)
            SimDomain.objects.create(uuid=vm.uuid, host_name=host_name, definition=definition_of(vm), cdroms={
                str(cdrom.slot): cdrom.iso_path for cdrom in vm.cdroms.all() if cdrom.iso_path})
        elif domain.host_name != host_name:
            # Defined anew on another host (its own failed): a new domain there starts off.
            domain.host_name, domain.power_state = host_name, "off"
            domain.save(update_fields=["host_name", "power_state"])

    def migrate(self, vm, target) -> None:
        """A move: the domain, running or not, is on `target` at once."""
        self._pause()
        self._domain(vm)
        SimDomain.objects.filter(uuid=vm.uuid).update(host_name=target.name)

    def delete(self, vm) -> None:
        self._pause()
        SimDomain.objects.filter(uuid=vm.uuid).delete()

    def power(self, vm, action: str) -> str:
        self._pause()
        allowed, result = POWER_TRANSITIONS[action]
        if SimDomain.objects.filter(uuid=vm.uuid, power_state__in=allowed).update(power_state=result):
            return result
        domain = self._domain(vm)  # not defined, already there, or in a state the action does not apply to
        if domain.power_state == result and action in ("power-on", "power-off", "shutdown", "pause", "resume"):
            return result  # already there: repeating the call is harmless
        raise DriverError(f"cannot {action} a VM that is {domain.power_state}")

    def state(self, vm) -> str:
        domain = SimDomain.objects.filter(uuid=vm.uuid).only("power_state").first()
        return domain.power_state if domain else "unknown"

    def states(self, vms: list) -> dict:
        known = dict(SimDomain.objects.filter(uuid__in=[vm.uuid for vm in vms]).values_list("uuid", "power_state"))
        return {vm.uuid: known.get(vm.uuid, "unknown") for vm in vms}

    def create_disk(self, path: Path, size_bytes: int, disk_format: str = "raw") -> None:
        files.create_sparse(path, size_bytes)

    def clone_disk(self, source: Path, target: Path, linked: bool, progress: ProgressCallback,
                   source_format: str = "raw") -> None:
        self._pause()
        if linked:
            # A linked clone starts as an empty overlay of the base's size; the base is recorded on the
            # disk row (libvirt uses a qcow2 backing file for the same thing).
            files.create_sparse(target, source.stat().st_size)
            progress(1.0)
        else:
            files.copy_sparse(source, target, progress)

    def delete_disk(self, path: Path) -> None:
        files.remove(path)

    def insert_cdrom(self, vm, slot: int, iso_path: Path) -> None:
        self._pause()
        if not files.is_iso9660(iso_path):
            raise DriverError(f"{iso_path} is not an ISO 9660 image")
        domain = self._domain(vm)
        if domain.cdroms.get(str(slot)) != str(iso_path):
            domain.cdroms[str(slot)] = str(iso_path)
            domain.save(update_fields=["cdroms"])

    def new_cdrom_slot(self, used: set[int], running: bool) -> int | None:
        return new_cdrom_slot(used, running)  # the buses of a libvirt VM, so that the sim teaches the same rules

    def eject_cdrom(self, vm, slot: int) -> None:
        self._pause()
        domain = self._domain(vm)
        domain.cdroms.pop(str(slot), None)
        domain.save(update_fields=["cdroms"])

    def attach_disk(self, vm, path: Path, serial: str, disk_format: str = "raw") -> None:
        if not path.is_file():
            raise DriverError(f"disk file {path} does not exist")
        domain = self._domain(vm)
        domain.disks[serial] = str(path)
        domain.save(update_fields=["disks"])

    def detach_disk(self, vm, serial: str) -> None:
        domain = self._domain(vm)
        domain.disks.pop(serial, None)
        domain.save(update_fields=["disks"])

    def agent_channel_path(self, vm) -> Path | None:
        return Path(settings.DATA_DIR) / "channels" / f"{vm.uuid}.sock"
