"""The libvirt driver's view into running VMs: the VNC screen QEMU serves on a unix socket (the domain's
`<graphics type='vnc'>` listens on a socket libvirt places in the domain's private directory, never on a TCP
port), the serial port's pseudo-terminal and its virtlogd log, and every running domain's counters in one
bulk stats call per host. These reach the sockets and files of the hypervisor host this process runs on."""

from pathlib import Path

import libvirt
from defusedxml.ElementTree import fromstring

from .base import DriverError
from .insight import CONSOLE_KINDS, ConsoleTarget, DomainCounters

CONSOLE_LOG_DIR = Path("/var/log/libvirt/qemu")  # virtlogd (root) writes there on every hypervisor host
STATS = (libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU
         | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)


def console_log_path(uuid) -> Path:
    return CONSOLE_LOG_DIR / f"{uuid}-console.log"


def _sum(stats: dict, prefix: str, count_key: str, field: str) -> int:
    return sum(int(stats.get(f"{prefix}.{i}.{field}", 0)) for i in range(int(stats.get(count_key, 0))))


def counters_of(stats: dict) -> DomainCounters:
    """One domain's record of virConnectGetAllDomainStats. Memory used is what the guest reports through the
    balloon (available - unused) when it does, else what QEMU holds (rss)."""
    kib = 1024
    total = int(stats.get("balloon.current", stats.get("balloon.maximum", 0))) * kib
    if "balloon.available" in stats and "balloon.unused" in stats:
        used = (int(stats["balloon.available"]) - int(stats["balloon.unused"])) * kib
    else:
        used = min(int(stats.get("balloon.rss", 0)) * kib, total) if total else int(stats.get("balloon.rss", 0)) * kib
    return DomainCounters(
        cpu_ns=int(stats.get("cpu.time", 0)), vcpus=int(stats.get("vcpu.current", 1)) or 1,
        memory_used=used, memory_total=total,
        disk_read=_sum(stats, "block", "block.count", "rd.bytes"),
        disk_write=_sum(stats, "block", "block.count", "wr.bytes"),
        net_rx=_sum(stats, "net", "net.count", "rx.bytes"), net_tx=_sum(stats, "net", "net.count", "tx.bytes"))


class LibvirtInsight:
    """Mixed into LibvirtDriver (which gives `connection`, `_domain` and `_call`)."""

    def console_target(self, vm, kind: str) -> ConsoleTarget:
        if kind not in CONSOLE_KINDS:
            raise DriverError(f"VM {vm.name} has no {kind!r} console (there are {', '.join(CONSOLE_KINDS)})")
        domain = self._domain(vm)
        if not self._call("reading the state", vm, domain.isActive):
            raise DriverError(f"VM {vm.name} is not running: its console opens once it is powered on")
        devices = fromstring(self._call("reading the devices", vm, lambda: domain.XMLDesc(0))).find("devices")
        if kind == "vnc":
            for graphics in devices.iter("graphics"):
                listen = graphics.find("listen")
                socket = graphics.get("socket") or (listen.get("socket") if listen is not None else None)
                if graphics.get("type") == "vnc" and socket:
                    return ConsoleTarget("unix", Path(socket))
            raise DriverError(f"VM {vm.name} has no VNC screen on a socket (defined before consoles existed: "
                              "power it off and on after Facet redefines it)")
        serial = devices.find("serial")
        source = serial.find("source") if serial is not None else None
        if serial is None or serial.get("type") != "pty" or source is None or not source.get("path"):
            raise DriverError(f"VM {vm.name} has no serial port on a pseudo-terminal")
        return ConsoleTarget("tty", Path(source.get("path")))

    def serial_log(self, vm, limit: int) -> bytes:
        try:
            with open(console_log_path(vm.uuid), "rb") as log:
                size = log.seek(0, 2)
                log.seek(max(0, size - limit))
                return log.read(limit)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise DriverError(f"cannot read the serial log of VM {vm.name}: {exc.strerror}") from None

    def domain_counters(self, vms: list) -> dict:
        wanted = {str(vm.uuid): vm.uuid for vm in vms}
        try:
            records = self.connection.getAllDomainStats(STATS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE)
        except libvirt.libvirtError as exc:
            raise DriverError(f"cannot read the domain stats on {self.uri}: {exc.get_error_message()}") from None
        counters = {}
        for domain, stats in records:
            uuid = wanted.get(domain.UUIDString())
            if uuid is not None:
                counters[uuid] = counters_of(stats)
        return counters
