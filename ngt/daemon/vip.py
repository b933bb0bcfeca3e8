"""The floating cluster address: the leader adds the cluster VIP to its interface when it wins the lease and
announces it with gratuitous ARP, and removes it the moment it steps down.

Never two holders: an instance adds the address only after winning the lease, and drops it on the first
renewal that fails or that does not answer within the renewal deadline (`instance.py`), well before the
lease (5 s) can pass to another instance. An instance removes the address at start too, so a host whose
service was killed (SIGKILL leaves the address behind) does not keep it once the service runs again;
the systemd unit's `ExecStopPost` removes it as soon as the service dies (docs/production.md)."""

import asyncio
import ipaddress
import logging
import socket
from pathlib import Path

log = logging.getLogger("ngt.daemon")
ARP_COUNT, ARP_SPACING = 3, 0.5  # gratuitous ARP packets: neighbours update their caches at once
ETH_P_ARP = 0x0806


class FloatingAddress:
    def __init__(self, vip: str, interface: str, prefix: int = 32) -> None:
        self.vip, self.interface, self.prefix = vip, interface, prefix

    def __str__(self) -> str:
        return f"{self.vip}/{self.prefix} on {self.interface}"

    async def add(self) -> None:
        """Hold the address here and tell the neighbours (raises OSError when `ip` refuses)."""
        code, output = await run("ip", "address", "replace", f"{self.vip}/{self.prefix}", "dev", self.interface)
        if code != 0:
            raise OSError(f"cannot add the cluster address {self}: {output}")
        asyncio.ensure_future(self.announce())  # in the background: the port opens now
        log.info("holding the cluster address %s", self)

    async def announce(self) -> None:
        """Gratuitous ARP (a broadcast request for the VIP from the VIP, as `arping -U` sends), from a raw
        socket: every neighbour, the guests' too, points its entry for the VIP at this host's interface."""
        try:
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as raw:
                raw.bind((self.interface, 0))
                frame = gratuitous_arp(interface_mac(self.interface), self.vip)
                for number in range(ARP_COUNT):
                    if number:
                        await asyncio.sleep(ARP_SPACING)
                    raw.send(frame)
        except OSError as exc:  # no CAP_NET_RAW: the address works, neighbours learn it when their entries age
            log.warning("could not announce %s with gratuitous ARP: %s", self, exc)

    async def remove(self) -> None:
        """Stop holding the address (nothing to do when it is not here)."""
        code, output = await run("ip", "address", "del", f"{self.vip}/{self.prefix}", "dev", self.interface)
        if code == 0:
            log.info("released the cluster address %s", self)
        elif "Cannot assign" not in output and "not found" not in output.lower():
            log.error("could not remove the cluster address %s: %s", self, output)

    def remove_now(self) -> None:
        """The same, from synchronous code that cannot wait (a step-down): started at once."""
        asyncio.ensure_future(self.remove())


def interface_mac(interface: str) -> bytes:
    return bytes.fromhex(Path(f"/sys/class/net/{interface}/address").read_text().strip().replace(":", ""))


def gratuitous_arp(mac: bytes, vip: str) -> bytes:
    address = ipaddress.IPv4Address(vip).packed
    ethernet = b"\xff" * 6 + mac + ETH_P_ARP.to_bytes(2, "big")
    # Ethernet, IPv4, 6- and 4-byte addresses, a request; sender = target = the VIP.
    arp = bytes.fromhex("0001" "0800" "06" "04" "0001") + mac + address + b"\x00" * 6 + address
    return ethernet + arp


async def run(*command: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace").strip()
