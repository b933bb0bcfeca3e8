"""The libvirt driver's day-2 changes (see base.Driver), mixed into LibvirtDriver.

Each change edits the persistent definition by redefining the domain from its inactive XML (which every
libvirt driver supports, `test:///default` included), then, when the domain runs, makes the same change to
the running guest: vCPU hot-plug and the balloon up to the maxima the domain was started with, disks and
NICs hot-plugged on virtio, `blockresize` for a disk grown while attached. A change the running guest cannot
take (more vCPUs or memory than its maxima) stays in the definition, for the next power cycle."""

import time
from pathlib import Path
from xml.etree.ElementTree import Element

import libvirt
from defusedxml.ElementTree import fromstring
from django.conf import settings

from . import libvirt as domain_xml  # the module, read at call time (it imports this one)
from . import libvirt_network, qemu_img
from .base import DriverError

UNPLUG_WAIT_SECONDS = 30
UNPLUG_POLL_SECONDS = 0.5
KIB = 1024
SIZE_UNITS = {"b": 1, "bytes": 1, "k": KIB, "kib": KIB, "m": KIB**2, "mib": KIB**2, "g": KIB**3, "gib": KIB**3}
DISK_FORMATS = ("raw", "qcow2")


def _bytes(element: Element | None) -> int:
    if element is None or not (element.text or "").strip():
        return 0
    return int(element.text) * SIZE_UNITS.get(element.get("unit", "KiB").lower(), KIB)


def _disk_at(devices: Element, path: Path) -> Element | None:
    return next((d for d in devices.iter("disk") if d.get("device", "disk") == "disk"
                 and d.find("source") is not None and d.find("source").get("file") == str(path)), None)


def _interface_with(devices: Element, mac: str) -> Element | None:
    return next((i for i in devices.iter("interface")
                 if i.find("mac") is not None and i.find("mac").get("address", "").lower() == mac), None)


def _free_target(*device_lists: Element) -> str:
    used = {d.find("target").get("dev") for devices in device_lists for d in devices.iter("disk")
            if d.find("target") is not None}
    return next(domain_xml._virtio_target(i) for i in range(len(used) + 1)
                if domain_xml._virtio_target(i) not in used)


class LibvirtDevices:
    """Needs the LibvirtDriver's `_domain`, `_call`, `connection`, `uri`."""

    def _redefine(self, vm, what: str, edit) -> libvirt.virDomain:
        """Change the persistent definition: `edit(root)` edits the inactive XML in place and says whether it
        changed anything (a rerun finds nothing left to do)."""
        domain = self._domain(vm)
        root = fromstring(self._call("reading the definition", vm,
                                     lambda: domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        if edit(root):
            xml = domain_xml._xml(root)
            self._call(what, vm, lambda: self.connection.defineXML(xml))
        return domain

    def _running_devices(self, vm, domain: libvirt.virDomain) -> Element | None:
        if not domain.isActive():
            return None
        return fromstring(self._call("reading the devices", vm, lambda: domain.XMLDesc(0))).find("devices")

    def set_cpu_memory(self, vm, vcpus: int, memory_bytes: int, max_vcpus: int, max_memory_bytes: int) -> bool:
        def edit(root: Element) -> bool:
            vcpu, memory = root.find("vcpu"), root.find("memory")
            current = root.find("currentMemory")
            if current is None:
                current = Element("currentMemory")
                root.insert(list(root).index(memory) + 1, current)
            for element, value in ((memory, max_memory_bytes), (current, memory_bytes)):
                element.set("unit", "KiB")
                element.text = str(value // KIB)
            vcpu.text, vcpu.attrib["current"] = str(max_vcpus), str(vcpus)
            return True

        domain = self._redefine(vm, "changing vCPUs and memory", edit)
        if not domain.isActive():
            return True
        live = fromstring(self._call("reading the running domain", vm, lambda: domain.XMLDesc(0)))
        if vcpus > int(live.findtext("vcpu")) or memory_bytes > _bytes(live.find("memory")):
            return False  # beyond what the guest was started with: at the next power cycle
        if int(live.find("vcpu").get("current", live.findtext("vcpu"))) != vcpus:
            self._call(f"setting {vcpus} vCPUs", vm,
                       lambda: domain.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        if _bytes(live.find("currentMemory")) != memory_bytes:
            self._call("setting the memory", vm,
                       lambda: domain.setMemoryFlags(memory_bytes // KIB, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        return True

    def rename(self, vm) -> None:
        """libvirt renames only a domain that is off; a running one keeps its old name until the next edit
        made while it is off (domains are found by uuid, so nothing depends on the name)."""
        domain = self._domain(vm)
        if not domain.isActive() and domain.name() != vm.name:
            self._call(f"renaming the domain to {vm.name}", vm, lambda: domain.rename(vm.name, 0))

    def set_boot_order(self, vm, order: list[str]) -> None:
        def edit(root: Element) -> bool:
            os_element = root.find("os")
            if [b.get("dev") for b in os_element.iterfind("boot")] == order:
                return False
            for boot in os_element.findall("boot"):
                os_element.remove(boot)
            for device in order:
                boot = Element("boot", dev=device)
                os_element.append(boot)
            return True

        self._redefine(vm, "setting the boot order", edit)

    def plug_disk(self, vm, path: Path, disk_format: str, serial: str) -> None:
        if not path.is_file():
            raise DriverError(f"disk file {path} does not exist")
        domain = self._domain(vm)
        running = self._running_devices(vm, domain)
        chosen: dict[str, str] = {}

        def edit(root: Element) -> bool:
            devices = root.find("devices")
            if _disk_at(devices, path) is not None:
                return False
            chosen["target"] = _free_target(devices, *([running] if running is not None else []))
            devices.append(domain_xml._disk_element(path, disk_format, chosen["target"], serial))
            return True

        self._redefine(vm, f"adding disk {path.name}", edit)
        if running is not None and _disk_at(running, path) is None:
            defined = _disk_at(self._devices(domain), path)
            xml = domain_xml._xml(defined)
            self._call(f"hot-plugging disk {path.name}", vm,
                       lambda: domain.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    def unplug_disk(self, vm, path: Path) -> None:
        def edit(root: Element) -> bool:
            devices = root.find("devices")
            disk = _disk_at(devices, path)
            if disk is not None:
                devices.remove(disk)
            return disk is not None

        domain = self._redefine(vm, f"removing disk {path.name}", edit)
        self._unplug_live(vm, domain, f"disk {path.name}", lambda devices: _disk_at(devices, path))

    def _unplug_live(self, vm, domain: libvirt.virDomain, what: str, find) -> None:
        """Ask the running guest to let go of a device and wait until it has (a hot unplug is a request the
        guest answers); a rerun asks again."""
        running = self._running_devices(vm, domain)
        device = find(running) if running is not None else None
        if device is None:
            return
        xml = domain_xml._xml(device)
        self._call(f"hot-unplugging {what}", vm, lambda: domain.detachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        deadline = time.monotonic() + UNPLUG_WAIT_SECONDS
        while (running := self._running_devices(vm, domain)) is not None and find(running) is not None:
            if time.monotonic() > deadline:
                raise DriverError(f"the guest of VM {vm.name} did not release {what} within {UNPLUG_WAIT_SECONDS} s: "
                                  "it is off the VM's definition but still in the running guest; retry, or "
                                  "power the VM off")
            time.sleep(UNPLUG_POLL_SECONDS)

    def grow_disk(self, vm, path: Path, disk_format: str, size_bytes: int) -> None:
        """`blockresize` while a running guest has the disk (it sees the new size at once), else the file."""
        domain = self._domain(vm)
        running = self._running_devices(vm, domain)
        attached = _disk_at(running, path) if running is not None else None
        if attached is None:
            self.create_disk(path, size_bytes, qemu_img.checked_format(disk_format))  # grows, never shrinks
            return
        target = attached.find("target").get("dev")
        self._call(f"growing disk {target}", vm,
                   lambda: domain.blockResize(target, size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES))

    def _interface(self, nic) -> Element:
        carrier = settings.FACET_LIBVIRT_NETWORKS.get(nic.network.name, libvirt_network.USER_CARRIER)
        return libvirt_network.interface_element(nic.mac, carrier, nic.network.vlan)

    def plug_nic(self, vm, nic) -> None:
        element = self._interface(nic)

        def edit(root: Element) -> bool:
            devices = root.find("devices")
            if _interface_with(devices, nic.mac) is not None:
                return False
            devices.append(element)
            return True

        domain = self._redefine(vm, f"adding NIC {nic.mac}", edit)
        running = self._running_devices(vm, domain)
        if running is not None and _interface_with(running, nic.mac) is None:
            xml = domain_xml._xml(element)
            self._call(f"hot-plugging NIC {nic.mac}", vm,
                       lambda: domain.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    def unplug_nic(self, vm, mac: str) -> None:
        def edit(root: Element) -> bool:
            devices = root.find("devices")
            interface = _interface_with(devices, mac)
            if interface is not None:
                devices.remove(interface)
            return interface is not None

        domain = self._redefine(vm, f"removing NIC {mac}", edit)
        self._unplug_live(vm, domain, f"NIC {mac}", lambda devices: _interface_with(devices, mac))

    def set_nic_network(self, vm, nic) -> None:
        """The NIC keeps its MAC and moves to what carries its new network; a running guest's NIC is moved in
        place where libvirt can, else unplugged and plugged again."""
        element = self._interface(nic)

        def edit(root: Element) -> bool:
            devices = root.find("devices")
            old = _interface_with(devices, nic.mac)
            if old is None:
                devices.append(element)
                return True
            position = list(devices).index(old)
            devices.remove(old)
            devices.insert(position, element)
            return True

        domain = self._redefine(vm, f"moving NIC {nic.mac}", edit)
        if self._running_devices(vm, domain) is None:
            return
        xml = domain_xml._xml(element)
        try:
            domain.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError:
            self._unplug_live(vm, domain, f"NIC {nic.mac}", lambda devices: _interface_with(devices, nic.mac))
            self._call(f"hot-plugging NIC {nic.mac}", vm,
                       lambda: domain.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    def domains(self, host) -> list[dict]:
        try:
            found = self.connection.listAllDomains(0)
            return [self._described(domain) for domain in found]
        except libvirt.libvirtError as exc:
            raise DriverError(f"cannot list the domains on {self.uri}: {exc.get_error_message()}") from None

    def _described(self, domain: libvirt.virDomain) -> dict:
        root = fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        problems: list[str] = []
        vcpu = root.find("vcpu")
        disks = []
        for disk in root.iterfind("devices/disk"):
            device, source = disk.get("device", "disk"), disk.find("source")
            target = disk.find("target").get("dev") if disk.find("target") is not None else "?"
            if device not in ("disk", "cdrom"):
                problems.append(f"{target} is a {device}, which Facet does not represent")
                continue
            if disk.get("type") != "file":
                problems.append(f"{target} is a {disk.get('type')} disk; Facet takes disk files only")
                continue
            disk_format = disk.find("driver").get("type", "raw") if disk.find("driver") is not None else "raw"
            if device == "disk" and disk_format not in DISK_FORMATS:
                problems.append(f"{target} is in {disk_format}; Facet takes raw or qcow2 disks")
            backing = disk.find("backingStore")
            if backing is not None and backing.find("source") is not None:
                problems.append(f"{target} has a backing file; flatten it first (virsh blockpull)")
            if device == "cdrom" and disk.find("target").get("bus") != "ide":
                problems.append(f"CD-ROM {target} is on {disk.find('target').get('bus')}; Facet's are on IDE")
            disks.append({"path": source.get("file") if source is not None else "", "format": disk_format,
                          "device": device, "target": target})
        for kind in ("hostdev", "filesystem", "redirdev"):
            if root.find(f"devices/{kind}") is not None:
                problems.append(f"the domain has a {kind} device, which Facet does not represent")
        nics = []
        for interface in root.iterfind("devices/interface"):
            source = interface.find("source")
            kind = interface.get("type")
            if kind == "bridge" and interface.find("virtualport") is not None:
                kind = "ovs"
            nics.append({"mac": interface.find("mac").get("address").lower(), "kind": kind,
                         "source": next(iter(source.attrib.values()), "") if source is not None else ""})
        return {"uuid": domain.UUIDString(), "name": domain.name(), "state": self._state_of(domain),
                "vcpus": int(vcpu.get("current", vcpu.text)), "max_vcpus": int(vcpu.text),
                "memory_bytes": _bytes(root.find("currentMemory")) or _bytes(root.find("memory")),
                "max_memory_bytes": _bytes(root.find("memory")), "disks": disks, "nics": nics,
                "problems": problems}
