"""The first-boot media of one VM, built in memory with pycdlib: ConfigDrive (`config-2`), NoCloud
(`cidata`) or Sysprep (unattend.xml and autounattend.xml at the root)."""

import ipaddress
import json
import re
from dataclasses import dataclass, field
from io import BytesIO

import pycdlib
import yaml

from console.models import Nic

from .sysprep import personalize

LABELS = {"config-drive": "config-2", "nocloud": "cidata", "sysprep": "SYSPREP"}


@dataclass
class Instance:
    """Everything about the VM that its media say: identity, its values and its network."""

    uuid: str
    name: str
    hostname: str
    key_values: dict[str, str] = field(default_factory=dict)
    nics: list[Nic] = field(default_factory=list)
    phone_home_url: str = ""


def media_files(datasource: str, content: str, instance: Instance) -> dict[str, bytes]:
    """The files of the media, by path."""
    if datasource == "sysprep":
        answers = personalize(content, instance.hostname, instance.key_values).encode()
        return {"unattend.xml": answers, "autounattend.xml": answers}
    vendor = _vendor_config(instance)
    network = _has_static_ip(instance.nics)
    if datasource == "nocloud":
        files = {"meta-data": _yaml({"instance-id": instance.uuid, "local-hostname": instance.hostname,
                                     "meta": instance.key_values}),
                 "user-data": content.encode()}
        if network:
            files["network-config"] = _yaml(network_config_v2(instance.nics))
        if vendor:
            files["vendor-data"] = vendor.encode()
        return files
    files = {"openstack/latest/meta_data.json": _json({
                 "uuid": instance.uuid, "hostname": instance.hostname, "name": instance.name,
                 "launch_index": 0, "meta": instance.key_values}),
             "openstack/latest/user_data": content.encode()}
    if network:
        files["openstack/latest/network_data.json"] = _json(network_data(instance.nics))
    if vendor:
        files["openstack/latest/vendor_data.json"] = _json({"cloud-init": vendor})
    return files


def build_iso(datasource: str, files: dict[str, bytes]) -> bytes:
    """An ISO 9660 image with Joliet and Rock Ridge names, so that Linux and Windows see the real names."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABELS[datasource])
    directories: set[str] = set()
    for path, data in sorted(files.items()):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory not in directories:
                iso.add_directory(_iso_name(directory), rr_name=parts[depth - 1], joliet_path=f"/{directory}")
                directories.add(directory)
        iso.add_fp(BytesIO(data), len(data), _iso_name(path, file=True), rr_name=parts[-1], joliet_path=f"/{path}")
    out = BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def _iso_name(path: str, file: bool = False) -> str:
    """The plain ISO 9660 name of a path: upper case d-characters, `NAME.EXT;1` for a file."""
    *directories, last = path.split("/")
    if file:
        stem, dot, extension = last.rpartition(".")
        last = f"{_d_characters(stem)}.{_d_characters(extension)};1" if dot else f"{_d_characters(last)}.;1"
    else:
        last = _d_characters(last)
    return "/" + "/".join([*map(_d_characters, directories), last])


def _d_characters(name: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", name.upper())


def _has_static_ip(nics: list[Nic]) -> bool:
    return any(nic.ip for nic in nics)


def network_data(nics: list[Nic]) -> dict:
    """OpenStack's network_data.json: every NIC by MAC, static where it has an address, else DHCP."""
    links, networks, dns = [], [], []
    for nic in nics:
        link = f"nic{nic.index}"
        links.append({"id": link, "type": "phy", "ethernet_mac_address": nic.mac})
        subnet = nic.network.subnet
        if not nic.ip:
            networks.append({"id": f"network{nic.index}", "link": link, "type": f"ipv{subnet.version}_dhcp"})
            continue
        entry = {"id": f"network{nic.index}", "link": link, "type": f"ipv{subnet.version}",
                 "ip_address": nic.ip, "netmask": str(subnet.netmask), "network_id": str(nic.network.uuid)}
        if nic.network.gateway:
            default = "0.0.0.0" if subnet.version == 4 else "::"  # noqa: S104  (a route, not a bind)
            entry["routes"] = [{"network": default, "netmask": default, "gateway": nic.network.gateway}]
        networks.append(entry)
        dns += [a for a in _dns(nic) if a not in dns]
    return {"links": links, "networks": networks, "services": [{"type": "dns", "address": a} for a in dns]}


def network_config_v2(nics: list[Nic]) -> dict:
    """NoCloud's network-config (netplan version 2)."""
    ethernets = {}
    for nic in nics:
        entry: dict = {"match": {"macaddress": nic.mac}}
        subnet = nic.network.subnet
        if nic.ip:
            entry["addresses"] = [f"{nic.ip}/{subnet.prefixlen}"]
            if nic.network.gateway:
                entry["routes"] = [{"to": "default", "via": nic.network.gateway}]
            if _dns(nic):
                entry["nameservers"] = {"addresses": _dns(nic)}
        else:
            entry[f"dhcp{subnet.version}"] = True
        ethernets[f"nic{nic.index}"] = entry
    return {"version": 2, "ethernets": ethernets}


def _dns(nic: Nic) -> list[str]:
    return [a.strip() for a in nic.network.dns_servers.split(",") if a.strip() and _is_address(a.strip())]


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _vendor_config(instance: Instance) -> str:
    """Vendor data that makes cloud-init call the console back when its final stage has run."""
    if not instance.phone_home_url:
        return ""
    return "#cloud-config\n" + yaml.safe_dump({"phone_home": {
        "url": instance.phone_home_url, "post": ["instance_id", "hostname"], "tries": 10}}, sort_keys=False)


def _json(value: dict) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def _yaml(value: dict) -> bytes:
    return yaml.safe_dump(value, sort_keys=False).encode()
