"""MAC addresses and static IPs: unique in the cluster, new for every clone."""

import ipaddress
import secrets

from console.core.errors import Conflict, InvalidRequest

from ..models import Network, Nic

# 52:54:00 is the prefix QEMU/KVM guests conventionally use (locally administered).
MAC_PREFIX = "52:54:00"


def new_mac(taken: set[str] | None = None) -> str:
    """A random MAC in the KVM range that no NIC has (and not in `taken`, for batches not saved yet)."""
    taken = taken if taken is not None else set()
    while True:
        mac = MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))
        if mac not in taken and not Nic.objects.filter(mac=mac).exists():
            taken.add(mac)
            return mac


def normalize_mac(mac: str, field: str) -> str:
    parts = mac.replace("-", ":").lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise InvalidRequest({field: [f"{mac!r} is not a MAC address (six hex pairs such as 52:54:00:12:34:56)"]})
    if int(parts[0], 16) & 1:
        raise InvalidRequest({field: [f"{mac} is a multicast address"]})
    mac = ":".join(parts)
    if Nic.objects.filter(mac=mac).exists():
        raise Conflict({field: [f"MAC {mac} is already used by another NIC"]})
    return mac


def static_ip(network: Network, requested: str, field: str, reserved: set[str]) -> str:
    """Check or allocate (`auto`) a static address on a network; `reserved` holds this batch's picks."""
    used = set(Nic.objects.filter(network=network, ip__isnull=False).values_list("ip", flat=True)) | reserved
    if requested == "auto":
        for number in network.pool():
            candidate = str(ipaddress.ip_address(number))
            if candidate not in used and candidate != network.gateway:
                reserved.add(candidate)
                return candidate
        raise Conflict({field: [f"the static-IP pool of network {network.name} is exhausted"
                                if network.pool() else f"network {network.name} has no static-IP pool"]})
    try:
        address = ipaddress.ip_address(requested)
    except ValueError:
        raise InvalidRequest({field: [f"{requested!r} is not an IP address"]}) from None
    if address not in network.subnet:
        raise InvalidRequest({field: [f"{address} is outside network {network.name} ({network.cidr})"]})
    if str(address) in used:
        raise Conflict({field: [f"{address} is already assigned on network {network.name}"]})
    if str(address) == network.gateway:
        raise InvalidRequest({field: [f"{address} is the gateway of network {network.name}"]})
    reserved.add(str(address))
    return str(address)
