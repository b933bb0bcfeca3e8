"""The `sim` hypervisor's day-2 changes (see base.Driver): the definition lives in SimDomain.definition,
the disk files are real and grown for real."""

from pathlib import Path

from ..models import SimDomain
from . import files
from .base import DriverError


def definition_of(vm) -> dict:
    """What `create` writes into a new SimDomain: the VM as it was defined."""
    return {"name": vm.name, "vcpus": vm.vcpus, "memory_bytes": vm.memory_bytes,
            "max_vcpus": vm.max_vcpus or vm.vcpus, "max_memory_bytes": vm.max_memory_bytes or vm.memory_bytes,
            "boot_order": vm.boot_order.split(","), "nics": {nic.mac: nic.network.name for nic in vm.nics.all()},
            "disks": {}}


class SimDevices:
    """Mixed into SimDriver."""

    def _changed(self, vm, **values) -> SimDomain:
        domain = self._domain(vm)
        domain.definition = {**domain.definition, **values}
        domain.save(update_fields=["definition"])
        return domain

    def set_cpu_memory(self, vm, vcpus: int, memory_bytes: int, max_vcpus: int, max_memory_bytes: int) -> bool:
        domain = self._domain(vm)
        running = domain.power_state != "off"
        live = not running or (vcpus <= domain.definition.get("max_vcpus", vm.vcpus)
                               and memory_bytes <= domain.definition.get("max_memory_bytes", vm.memory_bytes))
        self._changed(vm, vcpus=vcpus, memory_bytes=memory_bytes, max_vcpus=max_vcpus,
                      max_memory_bytes=max_memory_bytes)
        return live

    def rename(self, vm) -> None:
        self._changed(vm, name=vm.name)

    def set_boot_order(self, vm, order: list[str]) -> None:
        self._changed(vm, boot_order=order)

    def plug_disk(self, vm, path: Path, disk_format: str, serial: str) -> None:
        self.attach_disk(vm, path, serial, disk_format)

    def unplug_disk(self, vm, path: Path) -> None:
        domain = self._domain(vm)
        domain.disks = {serial: p for serial, p in domain.disks.items() if p != str(path)}
        domain.save(update_fields=["disks"])

    def grow_disk(self, vm, path: Path, disk_format: str, size_bytes: int) -> None:
        if not path.is_file():
            raise DriverError(f"disk file {path} does not exist")
        if path.stat().st_size < size_bytes:
            files.create_sparse(path, size_bytes)

    def plug_nic(self, vm, nic) -> None:
        domain = self._domain(vm)
        self._changed(vm, nics={**domain.definition.get("nics", {}), nic.mac: nic.network.name})

    def unplug_nic(self, vm, mac: str) -> None:
        domain = self._domain(vm)
        self._changed(vm, nics={m: n for m, n in domain.definition.get("nics", {}).items() if m != mac})

    def set_nic_network(self, vm, nic) -> None:
        self.plug_nic(vm, nic)

    def domains(self, host) -> list[dict]:
        return [{"uuid": str(d.uuid), "name": d.definition.get("name", str(d.uuid)), "state": d.power_state,
                 "vcpus": d.definition.get("vcpus", 1), "memory_bytes": d.definition.get("memory_bytes", 0),
                 "disks": [{"path": path, "format": fmt, "device": "disk"}
                           for path, fmt in d.definition.get("disks", {}).items()]
                 + [{"path": iso, "format": "raw", "device": "cdrom"} for iso in d.cdroms.values()],
                 "nics": [{"mac": mac, "network": network} for mac, network in d.definition.get("nics", {}).items()],
                 "problems": d.definition.get("problems", [])}
                for d in SimDomain.objects.filter(host_name=host.name)]
