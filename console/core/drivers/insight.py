"""What a driver shows of a running VM: where its consoles are, and its usage counters. The shapes shared by
`libvirt_insight.py` and `sim_insight.py` (the Driver protocol's last calls)."""

from dataclasses import dataclass
from pathlib import Path

# The consoles a VM has: its screen (VNC) and its first serial port.
CONSOLE_KINDS = ("vnc", "serial")


@dataclass(frozen=True)
class ConsoleTarget:
    """Where the web tier reaches one console of a running VM, on the hypervisor host it runs on:
    `unix` a stream socket (QEMU's VNC server bound to a socket, never a TCP port), `tty` a pseudo-terminal
    (QEMU's serial port), `sim` the sim driver's simulated serial console (no file)."""

    transport: str
    path: Path | None = None


@dataclass(frozen=True)
class DomainCounters:
    """One VM's cumulative counters as the hypervisor reports them at one instant: rates come from two
    samples. `memory_used` and `memory_total` are bytes now (not cumulative)."""

    cpu_ns: int
    vcpus: int
    memory_used: int
    memory_total: int
    disk_read: int
    disk_write: int
    net_rx: int
    net_tx: int
