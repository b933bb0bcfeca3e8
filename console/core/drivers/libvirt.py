"""The libvirt hypervisor (QEMU): `qemu:///system`, `qemu+ssh://HOST/system`, and libvirt's own `test:///default`
for unit tests. A domain's uuid is its VM's uuid; its disks are virtio-blk, its CD-ROMs IDE in slots 0 to 3
(Debian's cloud kernel has no AHCI driver) and SCSI on virtio-scsi above, where a drive can be hot-plugged
into a running guest; its NICs virtio on what carries their networks (libvirt_network.py), and the Guest
Tools channel a unix socket QEMU binds on the hypervisor host, where that host's Guest Tools Service connects."""

import functools
import os
import threading
import time
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, tostring

import libvirt
from defusedxml.ElementTree import fromstring
from django.conf import settings

from . import files, libvirt_network, qemu_img, shown_uri, without_uri_secrets
from .base import CDROM_SLOTS, COLD_CDROM_SLOTS, POWER_TRANSITIONS, DriverError, ProgressCallback, new_cdrom_slot
from .libvirt_devices import LibvirtDevices
from .libvirt_insight import CONSOLE_LOG_DIR, LibvirtInsight, console_log_path  # noqa: F401  (tests read the log dir here)
from .libvirt_snapshots import LibvirtSnapshots

CHANNEL_NAME = "org.facet.guest_tools.0"
IDE_SLOTS = COLD_CDROM_SLOTS  # one IDE controller: two buses of two units
SHUTDOWN_WAIT_SECONDS = 180
DETACH_WAIT_SECONDS = 30  # for the guest to release a hot-unplugged disk
DETACH_POLL_SECONDS = 0.5
# Set to `kvm` or `qemu` (TCG) to skip the probe, e.g. where KVM is present but does not work.
DOMAIN_TYPE_ENV = "FACET_LIBVIRT_DOMAIN_TYPE"

STATES = {
    libvirt.VIR_DOMAIN_RUNNING: "on",
    libvirt.VIR_DOMAIN_BLOCKED: "on",
    libvirt.VIR_DOMAIN_SHUTDOWN: "on",  # shutting down: still running
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
    libvirt.VIR_DOMAIN_SHUTOFF: "off",
    libvirt.VIR_DOMAIN_CRASHED: "off",
}

_lock = threading.Lock()
_connections: dict[str, libvirt.virConnect] = {}
_domain_types: dict[str, str] = {}

# libvirt prints every error to stderr besides raising it; the raised one is all we need.
libvirt.registerErrorHandler(lambda _context, _error: None, None)


def _message(exc: libvirt.libvirtError, uri: str) -> str:
    """libvirt's message, with the URI (which may name key files) as anyone may read it."""
    return without_uri_secrets(exc.get_error_message() or "", uri)


def _connection(uri: str) -> libvirt.virConnect:
    """One connection per URI and process, reopened when libvirtd went away meanwhile."""
    with _lock:
        connection = _connections.get(uri)
        if connection is None or not connection.isAlive():
            try:
                connection = libvirt.open(uri)
            except libvirt.libvirtError as exc:
                raise DriverError(f"cannot connect to the hypervisor at {shown_uri(uri)}: "
                                  f"{_message(exc, uri)}") from None
            _connections[uri] = connection
        return connection


def _domain_type(uri: str, connection: libvirt.virConnect) -> str:
    if uri.startswith("test:"):
        return "test"
    if os.environ.get(DOMAIN_TYPE_ENV):
        return os.environ[DOMAIN_TYPE_ENV]
    with _lock:
        if uri not in _domain_types:
            _domain_types[uri] = _probe_kvm(connection)
        return _domain_types[uri]


def _probe_kvm(connection: libvirt.virConnect) -> str:
    """`kvm` where libvirt offers KVM on a CPU with hardware virtualization (vmx, svm); else `qemu` (TCG).
    A /dev/kvm without either is a software KVM (kvm-pvm in nested clouds): it runs SeaBIOS, then fails on
    the first bootloader's mode switch and leaves the guest paused."""
    try:
        connection.getDomainCapabilities(None, "x86_64", None, "kvm")
        features = {f.get("name") for f in fromstring(connection.getCapabilities()).iterfind("host/cpu/feature")}
    except libvirt.libvirtError:
        return "qemu"
    return "kvm" if features & {"vmx", "svm"} else "qemu"


def _cdrom_target(slot: int) -> str:
    return "hd" + "abcd"[slot] if slot < IDE_SLOTS else "sd" + "abcdefghijklmnop"[slot - IDE_SLOTS]


def _cdrom_address(slot: int) -> dict[str, str]:
    if slot < IDE_SLOTS:
        return {"type": "drive", "controller": "0", "bus": str(slot // 2), "target": "0", "unit": str(slot % 2)}
    return {"type": "drive", "controller": "0", "bus": "0", "target": "0", "unit": str(slot - IDE_SLOTS)}


def _cdrom_element(slot: int, iso_path: Path | None) -> Element:
    if not 0 <= slot < CDROM_SLOTS:
        raise DriverError(f"CD-ROM slot {slot} does not exist: a VM has slots 0 to {CDROM_SLOTS - 1}")
    disk = Element("disk", type="file", device="cdrom")
    SubElement(disk, "driver", name="qemu", type="raw")
    if iso_path is not None:
        SubElement(disk, "source", file=str(iso_path))
    SubElement(disk, "target", dev=_cdrom_target(slot), bus="ide" if slot < IDE_SLOTS else "scsi")
    SubElement(disk, "readonly")
    SubElement(disk, "address", **_cdrom_address(slot))
    return disk


def _disk_element(path: Path, disk_format: str, target: str, serial: str | None = None) -> Element:
    disk = Element("disk", type="file", device="disk")
    # The format as recorded, never probed: the guest writes this file's first bytes.
    SubElement(disk, "driver", name="qemu", type=qemu_img.checked_format(disk_format))
    SubElement(disk, "source", file=str(path))
    SubElement(disk, "target", dev=target, bus="virtio")
    if serial:
        SubElement(disk, "serial").text = serial
    return disk


def _disk_with_serial(devices, serial: str) -> Element | None:
    return next((d for d in devices.iter("disk") if d.findtext("serial") == serial), None)


def _virtio_target(index: int) -> str:
    """vda, vdb, ... vdz, vdaa, ... as libvirt names them."""
    name = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        name = chr(ord("a") + remainder) + name
    return "vd" + name


def _xml(element: Element) -> str:
    return tostring(element, encoding="unicode")


def _libvirt_errors(method):
    """Whatever libvirt call a driver method makes, its failure reaches the console as a DriverError."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except libvirt.libvirtError as exc:
            raise DriverError(f"{method.__name__.replace('_', ' ')} failed on {shown_uri(self.uri)}: "
                              f"{_message(exc, self.uri)}") from None
    return wrapper


class LibvirtDriver(LibvirtDevices, LibvirtInsight, LibvirtSnapshots):
    def __init__(self, uri: str) -> None:
        self.uri = uri

    @property
    def connection(self) -> libvirt.virConnect:
        return _connection(self.uri)

    def _call(self, what: str, vm, operation):
        """Run a libvirt call, turning its error into a DriverError that says what failed, for which VM, where."""
        try:
            return operation()
        except libvirt.libvirtError as exc:
            raise DriverError(f"{what} of VM {vm.name} failed on {shown_uri(self.uri)}: "
                              f"{_message(exc, self.uri)}") from None

    def _lookup(self, vm) -> libvirt.virDomain | None:
        try:
            return self.connection.lookupByUUIDString(str(vm.uuid))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise DriverError(f"cannot look up VM {vm.name} on {shown_uri(self.uri)}: "
                              f"{_message(exc, self.uri)}") from None

    def _domain(self, vm) -> libvirt.virDomain:
        domain = self._lookup(vm)
        if domain is None:
            raise DriverError(f"VM {vm.name} is not defined on the hypervisor {shown_uri(self.uri)}")
        return domain

    def _devices(self, domain: libvirt.virDomain):
        """The persistent definition's devices (what the VM boots with next)."""
        return fromstring(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find("devices")

    def _live_flags(self, domain: libvirt.virDomain) -> int:
        """Change the definition, and the running guest too when there is one."""
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if domain.isActive():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        return flags

    def _domain_xml(self, vm) -> str:
        connection = self.connection
        domain = Element("domain", type=_domain_type(self.uri, connection))
        SubElement(domain, "name").text = vm.name
        SubElement(domain, "uuid").text = str(vm.uuid)
        # The maxima leave room for hot-adding vCPUs and deflating the balloon (libvirt_devices.py).
        SubElement(domain, "memory", unit="b").text = str(max(vm.max_memory_bytes, vm.memory_bytes))
        SubElement(domain, "currentMemory", unit="b").text = str(vm.memory_bytes)
        SubElement(domain, "vcpu", current=str(vm.vcpus)).text = str(max(vm.max_vcpus, vm.vcpus))
        os_element = SubElement(domain, "os")
        # i440fx: its IDE controller carries the CD-ROMs.
        SubElement(os_element, "type", arch="x86_64", machine="pc").text = "hvm"
        for device in vm.boot_order.split(","):
            SubElement(os_element, "boot", dev=device)
        features = SubElement(domain, "features")
        SubElement(features, "acpi")  # ACPI shutdown and reboot
        SubElement(domain, "on_poweroff").text = "destroy"
        SubElement(domain, "on_reboot").text = "restart"
        devices = SubElement(domain, "devices")
        for disk in vm.disks.select_related("storage_container").order_by("index"):
            if not disk.path.is_file():
                raise DriverError(f"disk {disk.index} of VM {vm.name} ({disk.path}) does not exist")
            devices.append(_disk_element(disk.path, disk.disk_format, _virtio_target(disk.index)))
        for cdrom in vm.cdroms.order_by("slot"):
            devices.append(_cdrom_element(cdrom.slot, Path(cdrom.iso_path) if cdrom.iso_path else None))
        # The bus of CD-ROM slots 4 and up, there from the start so that a drive can join a running guest.
        SubElement(devices, "controller", type="scsi", index="0", model="virtio-scsi")
        devices.extend(libvirt_network.interface_elements(vm.nics.select_related("network").order_by("index"),
                                                          settings.FACET_LIBVIRT_NETWORKS))
        # No path: libvirt makes the socket in its per-domain channel directory at each start (it would
        # replace a path of ours there, and QEMU's user may write nowhere else we could count on).
        channel = SubElement(devices, "channel", type="unix")
        SubElement(channel, "source", mode="bind")
        SubElement(channel, "target", type="virtio", name=CHANNEL_NAME)
        # The serial console goes to a pty (the browser's serial console, virsh console) and is logged by
        # virtlogd, for diagnosis and the browser console's scrollback.
        serial = SubElement(devices, "serial", type="pty")
        SubElement(serial, "log", file=str(console_log_path(vm.uuid)), append="off")
        SubElement(serial, "target", port="0")
        # The screen: QEMU's VNC server on a unix socket libvirt makes in the domain's private directory, so no
        # VNC port is reachable from the network; the browser console reaches it through the web tier.
        graphics = SubElement(devices, "graphics", type="vnc")
        SubElement(graphics, "listen", type="socket")
        memballoon = SubElement(devices, "memballoon", model="virtio")
        SubElement(memballoon, "stats", period="10")  # the guest's own memory figures, for the metrics
        return _xml(domain)

    @_libvirt_errors
    def create(self, vm) -> None:
        if self._lookup(vm) is not None:
            return  # defined by an earlier run of this task
        xml = self._domain_xml(vm)
        self._call("defining the domain", vm, lambda: self.connection.defineXML(xml))

    @_libvirt_errors
    def delete(self, vm) -> None:
        domain = self._lookup(vm)
        if domain is None:
            return
        if domain.isActive():
            self._call("stopping the domain", vm, domain.destroy)
        self._call("undefining the domain", vm, lambda: domain.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA))

    @_libvirt_errors
    def migrate(self, vm, target) -> None:
        """A running domain is migrated live to the target's libvirtd, which takes its definition, over the
        disks' shared storage (the storage container is mounted alike on every host); a domain that is off is
        defined there and undefined here. `target.driver_uri` must reach the target's libvirtd from this host
        (qemu+ssh:// or qemu+tls://)."""
        domain = self._lookup(vm)
        if domain is None:
            return  # moved by an earlier run of this task
        if domain.isActive():
            flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_PERSIST_DEST
                     | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
            self._call(f"live migration to {target.name}", vm,
                       lambda: domain.migrateToURI3(target.driver_uri, {}, flags))
            return
        xml = self._call("reading the definition", vm, lambda: domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        there = _connection(target.driver_uri)
        self._call(f"defining the domain on {target.name}", vm, lambda: there.defineXML(xml))
        self._call("undefining the domain here", vm, lambda: domain.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA))

    def _state_of(self, domain: libvirt.virDomain) -> str:
        return STATES.get(domain.state()[0], "unknown")

    @_libvirt_errors
    def power(self, vm, action: str) -> str:
        domain = self._domain(vm)
        allowed, result = POWER_TRANSITIONS[action]
        current = self._call("reading the power state", vm, lambda: self._state_of(domain))
        if current == result and action in ("power-on", "power-off", "shutdown", "pause", "resume"):
            return result  # already there: repeating the call is harmless
        if current not in allowed:
            raise DriverError(f"cannot {action} VM {vm.name} while it is {current}")
        if action == "power-on":
            self._call("powering on", vm, domain.resume if current == "paused" else domain.create)
        elif action == "pause":
            self._call("pausing", vm, domain.suspend)
        elif action == "resume":
            self._call("resuming", vm, domain.resume)
        elif action == "power-off":
            self._call("powering off", vm, domain.destroy)
        elif action == "reset":
            self._call("resetting", vm, lambda: domain.reset(0))
        elif action == "reboot":
            self._call("rebooting", vm, lambda: domain.reboot(libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN))
        else:
            self._shutdown(vm, domain)
        return result

    def _shutdown(self, vm, domain: libvirt.virDomain) -> None:
        """ACPI shutdown, waiting for the guest to power itself off."""
        self._call("sending the ACPI shutdown", vm, domain.shutdown)
        deadline = time.monotonic() + SHUTDOWN_WAIT_SECONDS
        while self._state_of(domain) != "off":
            if time.monotonic() > deadline:
                raise DriverError(f"VM {vm.name} still runs {SHUTDOWN_WAIT_SECONDS} s after the ACPI shutdown: "
                                  "its guest may ignore ACPI; use power-off")
            time.sleep(1)

    @_libvirt_errors
    def state(self, vm) -> str:
        domain = self._lookup(vm)
        return self._state_of(domain) if domain is not None else "unknown"

    @_libvirt_errors
    def states(self, vms: list) -> dict:
        try:
            domains = self.connection.listAllDomains(0)
            known = {domain.UUIDString(): self._state_of(domain) for domain in domains}
        except libvirt.libvirtError as exc:
            raise DriverError(f"cannot list the domains on {shown_uri(self.uri)}: "
                              f"{_message(exc, self.uri)}") from None
        return {vm.uuid: known.get(str(vm.uuid), "unknown") for vm in vms}

    def create_disk(self, path: Path, size_bytes: int, disk_format: str = "raw") -> None:
        """A new raw sparse disk, or an existing disk grown to the size (never shrunk)."""
        if path.is_file() and qemu_img.checked_format(disk_format) == "qcow2":
            qemu_img.run("resize", "-f", "qcow2", str(path), str(size_bytes))
        elif not path.is_file() or path.stat().st_size < size_bytes:
            files.create_sparse(path, size_bytes)

    def clone_disk(self, source: Path, target: Path, linked: bool, progress: ProgressCallback,
                   source_format: str = "raw") -> None:
        if target.exists():
            return  # made by an earlier run of this task
        if not source.is_file():
            raise DriverError(f"source disk {source} does not exist")
        target.parent.mkdir(parents=True, exist_ok=True)
        if linked:
            # An overlay recording its base's format, as libvirt will not guess a backing file's format.
            qemu_img.run("create", "-q", "-f", "qcow2", "-b", str(source.resolve()), "-F",
                         qemu_img.checked_format(source_format), str(target))
            progress(1.0)
            return
        partial = target.with_name(target.name + ".part")
        qemu_img.convert(source, source_format, partial, progress)
        os.replace(partial, target)

    def delete_disk(self, path: Path) -> None:
        files.remove(path)

    @_libvirt_errors
    def insert_cdrom(self, vm, slot: int, iso_path: Path) -> None:
        if not files.is_iso9660(iso_path):
            raise DriverError(f"{iso_path} is not an ISO 9660 image")
        self._change_cdrom(vm, slot, iso_path)

    @_libvirt_errors
    def eject_cdrom(self, vm, slot: int) -> None:
        self._change_cdrom(vm, slot, None)

    def _change_cdrom(self, vm, slot: int, iso_path: Path | None) -> None:
        if not 0 <= slot < CDROM_SLOTS:
            raise DriverError(f"CD-ROM slot {slot} of VM {vm.name} does not exist: a VM has slots 0 to "
                              f"{CDROM_SLOTS - 1}")
        domain = self._domain(vm)
        target = _cdrom_target(slot)
        # What the guest sees now: the running domain's devices, else the definition's.
        devices = fromstring(domain.XMLDesc(0)).find("devices")
        drive = next((d for d in devices.iter("disk") if d.find("target").get("dev") == target), None)
        if drive is None and iso_path is None:
            return  # no drive, so nothing in it
        if drive is not None and drive.find("source") is None and iso_path is None:
            return  # already empty
        if drive is not None and drive.find("source") is not None and drive.find("source").get("file") == str(
                iso_path):
            return  # defined with this medium, or inserted by an earlier run of this task
        xml = _xml(_cdrom_element(slot, iso_path))
        what = f"{'inserting ' + iso_path.name + ' in' if iso_path else 'ejecting'} CD-ROM {slot}"
        if drive is not None:
            # FORCE: eject even when the guest has locked the tray.
            flags = self._live_flags(domain) | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
            self._call(what, vm, lambda: domain.updateDeviceFlags(xml, flags))
        elif domain.isActive() and slot < IDE_SLOTS:
            raise DriverError(f"VM {vm.name} runs and has no CD-ROM drive in slot {slot}: the IDE bus (slots 0 to "
                              f"{IDE_SLOTS - 1}) takes a new drive only while the VM is off; power it off, or use "
                              f"a slot from {IDE_SLOTS} up (SCSI), which can be added while it runs")
        else:
            # A new drive: into the definition, and hot-plugged into the running guest on SCSI.
            self._call(what, vm, lambda: domain.attachDeviceFlags(xml, self._live_flags(domain)))

    def new_cdrom_slot(self, used: set[int], running: bool) -> int | None:
        return new_cdrom_slot(used, running)

    @_libvirt_errors
    def attach_disk(self, vm, path: Path, serial: str, disk_format: str = "raw") -> None:
        if not path.is_file():
            raise DriverError(f"disk file {path} does not exist")
        domain = self._domain(vm)
        disks = list(self._devices(domain).iter("disk"))
        if any(d.findtext("serial") == serial for d in disks):
            return
        used = {d.find("target").get("dev") for d in disks}
        target = next(_virtio_target(i) for i in range(len(used) + 1) if _virtio_target(i) not in used)
        xml = _xml(_disk_element(path, disk_format, target, serial))
        self._call(f"attaching disk {path.name}", vm, lambda: domain.attachDeviceFlags(xml, self._live_flags(domain)))

    @_libvirt_errors
    def detach_disk(self, vm, serial: str) -> None:
        """Off the definition at once; off a running guest once the guest lets go of it (a hot unplug is a
        request the guest answers), waiting up to DETACH_WAIT_SECONDS. A rerun asks the guest again."""
        domain = self._domain(vm)
        defined = _disk_with_serial(self._devices(domain), serial)
        live = _disk_with_serial(self._live_devices(domain), serial) if domain.isActive() else None
        flags = (libvirt.VIR_DOMAIN_AFFECT_CONFIG if defined is not None else 0) | (
            libvirt.VIR_DOMAIN_AFFECT_LIVE if live is not None else 0)
        if flags:
            xml = _xml(defined if defined is not None else live)
            self._call(f"detaching disk {serial}", vm, lambda: domain.detachDeviceFlags(xml, flags))
        if live is not None:
            self._wait_for_release(vm, domain, serial)

    def _live_devices(self, domain: libvirt.virDomain):
        """The running guest's devices (the definition's when the domain is not running)."""
        return fromstring(domain.XMLDesc(0)).find("devices")

    def _wait_for_release(self, vm, domain: libvirt.virDomain, serial: str) -> None:
        deadline = time.monotonic() + DETACH_WAIT_SECONDS
        while _disk_with_serial(self._call("reading the devices", vm, lambda: self._live_devices(domain)),
                                serial) is not None:
            if time.monotonic() > deadline:
                raise DriverError(
                    f"the guest of VM {vm.name} did not release disk {serial} within {DETACH_WAIT_SECONDS} s: it is "
                    "off the VM's definition but still attached to the running guest (a guest that is booting, "
                    "or has the disk mounted, may refuse the unplug); retry, or power the VM off")
            time.sleep(DETACH_POLL_SECONDS)

    @_libvirt_errors
    def agent_channel_path(self, vm) -> Path | None:
        """The running domain's channel socket on the hypervisor host; None while the VM is not running."""
        domain = self._lookup(vm)
        if domain is None or not domain.isActive():
            return None
        devices = fromstring(self._call("reading the devices", vm, lambda: domain.XMLDesc(0))).find("devices")
        for channel in devices.iter("channel"):
            source = channel.find("source")
            if channel.find("target").get("name") == CHANNEL_NAME and source is not None and source.get("path"):
                return Path(source.get("path"))
        return None
