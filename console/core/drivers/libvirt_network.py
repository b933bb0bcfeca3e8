"""What carries a Facet network on a libvirt host, and a VM's NIC as a libvirt `<interface>`.

`FACET_LIBVIRT_NETWORKS` names, per Facet network, what already carries it on every hypervisor host:

    FACET_LIBVIRT_NETWORKS="lan=bridge:br0, dmz=ovs:br-ext, lab=network:default, test=user"

- `bridge:NAME`: a Linux bridge that carries the network as it is (for a VLAN, a bridge over the VLAN's
  interface, e.g. one enslaving `eth0.10`): a Linux bridge cannot tag a port;
- `ovs:NAME`: an Open vSwitch bridge; the port is tagged with the network's VLAN (none for VLAN 0);
- `network:NAME`: a libvirt network (`virsh net-list`), configured there;
- `user`: QEMU's user-mode networking (SLIRP): outbound connections only, the guest at 10.0.2.15 by DHCP and
  the hypervisor host at 10.0.2.2, whatever the Facet network's CIDR says.

A network not named gets `user`, which works on any host without setup. This module needs neither libvirt
nor Django: settings.py reads the setting through it, so a mistake stops every process at start."""

from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement

USER_MODE = "user"
KINDS = ("bridge", "ovs", "network")
FORMAT = "NAME=bridge:BRIDGE, NAME=ovs:BRIDGE, NAME=network:LIBVIRT_NETWORK or NAME=user"


class NetworkMapError(ValueError):
    pass


@dataclass(frozen=True)
class Carrier:
    """What carries a Facet network on the hypervisor host: `kind` is one of KINDS or USER_MODE."""

    kind: str
    source: str = ""


USER_CARRIER = Carrier(USER_MODE)


def parse_network_map(text: str) -> dict[str, Carrier]:
    """`lan=bridge:br0, lab=user` as {network name: Carrier}; NetworkMapError says what is wrong and where."""
    carriers: dict[str, Carrier] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = (part.strip() for part in entry.partition("="))
        if not name or not equals:
            raise NetworkMapError(f"{entry!r} names no network: expected {FORMAT}")
        if name in carriers:
            raise NetworkMapError(f"network {name!r} is mapped twice")
        carriers[name] = _carrier(name, value)
    return carriers


def _carrier(name: str, value: str) -> Carrier:
    if value == USER_MODE:
        return USER_CARRIER
    kind, colon, source = (part.strip() for part in value.partition(":"))
    if kind not in KINDS or not colon:
        raise NetworkMapError(f"network {name!r}: {value!r} is not a carrier: expected {FORMAT}")
    if not source or any(c.isspace() or c in "'\"<>&/" for c in source):
        raise NetworkMapError(f"network {name!r}: {kind} needs a name without spaces, quotes or slashes, "
                              f"not {source!r}")
    return Carrier(kind, source)


def interface_element(mac: str, carrier: Carrier, vlan: int) -> Element:
    """A virtio NIC with the VM's MAC on what carries its network."""
    kind = {"ovs": "bridge"}.get(carrier.kind, carrier.kind)
    interface = Element("interface", type=kind)
    SubElement(interface, "mac", address=mac)
    if carrier.kind != USER_MODE:
        SubElement(interface, "source", {kind: carrier.source})
    if carrier.kind == "ovs":
        SubElement(interface, "virtualport", type="openvswitch")
        if vlan:
            SubElement(SubElement(interface, "vlan"), "tag", id=str(vlan))
    SubElement(interface, "model", type="virtio")
    return interface


def interface_elements(nics: Iterable, carriers: dict[str, Carrier]) -> list[Element]:
    """The VM's NICs (with their networks), each on what `carriers` says carries its network, else `user`."""
    return [interface_element(nic.mac, carriers.get(nic.network.name, USER_CARRIER), nic.network.vlan)
            for nic in nics]
