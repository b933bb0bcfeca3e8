"""The media as a guest sees them: read back with isoinfo and blkid, and with cloud-init's own
datasource readers from Debian's package (unpacked by the Makefile)."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from console.models import VM, Network, Nic
from customization.services import media
from customization.services.cloud_config import cloud_init_dir
from customization.services.lifecycle import CustomizationRequest
from customization.services.media import Instance
from tests.customization.conftest import CLOUD_CONFIG, UNATTEND

UUID = "6c0f3c43-3bd5-4c4b-9d42-2a8e6d1c2f10"


@pytest.fixture
def nics(cluster) -> list[Nic]:
    lan = Network.objects.get(name="lan")
    lan.dns_servers = "10.0.0.53, 9.9.9.9"
    return [Nic(index=0, network=lan, mac="52:54:00:00:00:01", ip="10.0.0.100"),
            Nic(index=1, network=lan, mac="52:54:00:00:00:02")]


def instance(nics=(), **overrides) -> Instance:
    values = {"uuid": UUID, "name": "web_1", "hostname": "web-1", "key_values": {"role": "web"}, "nics": list(nics),
              "phone_home_url": "https://console.example/customization/phone-home/TOKEN/"}
    values.update(overrides)
    return Instance(**values)


def write_iso(tmp_path: Path, datasource: str, files: dict[str, bytes]) -> Path:
    iso = tmp_path / f"{datasource}.iso"
    iso.write_bytes(media.build_iso(datasource, files))
    return iso


def label(iso: Path) -> str:
    return subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(iso)], capture_output=True, text=True,
                          check=True).stdout.strip()


def isoinfo_names(iso: Path, option: str) -> list[str]:
    listing = subprocess.run(["isoinfo", "-i", str(iso), option, "-f"], capture_output=True, text=True,
                             check=True).stdout
    return sorted(listing.split())


def isoinfo_read(iso: Path, path: str) -> bytes:
    return subprocess.run(["isoinfo", "-i", str(iso), "-J", "-x", path], capture_output=True, check=True).stdout


def extract(iso: Path, target: Path) -> Path:
    """The ISO's files in a directory, as a mount would show them (mounting needs privileges)."""
    names = isoinfo_names(iso, "-J")
    for name in names:
        destination = target / name.lstrip("/")
        if any(other.startswith(name + "/") for other in names):
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(isoinfo_read(iso, name))
    return target


def test_config_drive(tmp_path, nics):
    files = media.media_files("config-drive", CLOUD_CONFIG, instance(nics))
    iso = write_iso(tmp_path, "config-drive", files)
    assert label(iso) == "config-2"
    expected = ["/openstack", "/openstack/latest", "/openstack/latest/meta_data.json",
                "/openstack/latest/network_data.json", "/openstack/latest/user_data",
                "/openstack/latest/vendor_data.json"]
    assert isoinfo_names(iso, "-J") == isoinfo_names(iso, "-R") == expected
    meta = json.loads(isoinfo_read(iso, "/openstack/latest/meta_data.json"))
    assert meta == {"uuid": UUID, "hostname": "web-1", "name": "web_1", "launch_index": 0, "meta": {"role": "web"}}
    assert isoinfo_read(iso, "/openstack/latest/user_data").decode() == CLOUD_CONFIG


def test_nocloud(tmp_path, nics):
    iso = write_iso(tmp_path, "nocloud", media.media_files("nocloud", CLOUD_CONFIG, instance(nics)))
    assert label(iso) == "cidata"
    assert isoinfo_names(iso, "-R") == ["/meta-data", "/network-config", "/user-data", "/vendor-data"]
    assert yaml.safe_load(isoinfo_read(iso, "/meta-data")) == {
        "instance-id": UUID, "local-hostname": "web-1", "meta": {"role": "web"}}
    assert yaml.safe_load(isoinfo_read(iso, "/network-config")) == {"version": 2, "ethernets": {
        "nic0": {"match": {"macaddress": "52:54:00:00:00:01"}, "addresses": ["10.0.0.100/24"],
                 "routes": [{"to": "default", "via": "10.0.0.1"}],
                 "nameservers": {"addresses": ["10.0.0.53", "9.9.9.9"]}},
        "nic1": {"match": {"macaddress": "52:54:00:00:00:02"}, "dhcp4": True}}}


def test_without_static_ips_or_public_url_there_is_no_network_or_vendor_data(tmp_path, nics):
    files = media.media_files("config-drive", CLOUD_CONFIG, instance([nics[1]], phone_home_url=""))
    assert sorted(files) == ["openstack/latest/meta_data.json", "openstack/latest/user_data"]


def test_sysprep(tmp_path):
    files = media.media_files("sysprep", UNATTEND, instance(hostname="win-1", key_values={"org": "R&D <1>"}))
    iso = write_iso(tmp_path, "sysprep", files)
    assert isoinfo_names(iso, "-J") == ["/autounattend.xml", "/unattend.xml"]
    answers = isoinfo_read(iso, "/unattend.xml").decode()
    assert answers == isoinfo_read(iso, "/autounattend.xml").decode()
    assert "<ComputerName>win-1</ComputerName>" in answers
    assert "<RegisteredOrganization>R&amp;D &lt;1&gt;</RegisteredOrganization>" in answers


@pytest.fixture
def cloudinit():
    """cloud-init's own modules from the Debian package; `requests` and `configobj`, which the readers
    import but do not use here, are stubbed."""
    root = cloud_init_dir() / "usr/lib/python3/dist-packages"
    if not (root / "cloudinit").is_dir():
        pytest.skip("cloud-init's package is not unpacked (make test does it)")

    class Stub(types.ModuleType):
        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (Exception,), {})

    stubbed = {name: sys.modules.get(name) for name in ("requests", "configobj")}
    sys.modules.update({name: Stub(name) for name in stubbed})
    sys.path.insert(0, str(root))
    try:
        from cloudinit.sources import DataSourceNoCloud
        from cloudinit.sources.helpers import openstack

        yield types.SimpleNamespace(openstack=openstack, nocloud=DataSourceNoCloud)
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == "cloudinit" or n.startswith("cloudinit.")]:
            del sys.modules[name]
        for name, module in stubbed.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def test_cloud_init_reads_the_config_drive(tmp_path, nics, cloudinit):
    iso = write_iso(tmp_path, "config-drive", media.media_files("config-drive", CLOUD_CONFIG, instance(nics)))
    found = cloudinit.openstack.ConfigDriveReader(str(extract(iso, tmp_path / "mnt"))).read_v2()
    assert found["metadata"]["uuid"] == UUID and found["metadata"]["hostname"] == "web-1"
    assert found["metadata"]["meta"] == {"role": "web"}
    assert found["userdata"] == CLOUD_CONFIG.encode()
    assert "phone_home" in found["vendordata"]["cloud-init"]
    network = cloudinit.openstack.convert_net_json(found["networkdata"], known_macs={
        "52:54:00:00:00:01": "eth0", "52:54:00:00:00:02": "eth1"})
    physical = {c["mac_address"]: c for c in network["config"] if c["type"] == "physical"}
    static = physical["52:54:00:00:00:01"]["subnets"][0]
    assert (static["type"], static["address"], static["netmask"]) == ("static", "10.0.0.100", "255.255.255.0")
    assert physical["52:54:00:00:00:02"]["subnets"][0]["type"] == "dhcp4"


def test_cloud_init_reads_nocloud(tmp_path, nics, cloudinit):
    iso = write_iso(tmp_path, "nocloud", media.media_files("nocloud", CLOUD_CONFIG, instance(nics)))
    mount = extract(iso, tmp_path / "mnt")
    seeded = cloudinit.nocloud.util.pathprefix2dict(str(mount), required=["user-data", "meta-data"],
                                                    optional=["vendor-data", "network-config"])
    found = cloudinit.nocloud._merge_new_seed({"meta-data": {}, "user-data": b"", "vendor-data": None,
                                               "network-config": None}, seeded)
    assert found["meta-data"]["instance-id"] == UUID and found["meta-data"]["local-hostname"] == "web-1"
    assert found["user-data"] == CLOUD_CONFIG.encode()
    assert found["network-config"]["ethernets"]["nic0"]["addresses"] == ["10.0.0.100/24"]


def test_media_of_a_created_vm_are_its_own(cluster, create_vm, tmp_path):
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG))
    iso = Path(VM.objects.get(pk=vm.pk).customization.iso_path)
    assert label(iso) == "config-2"
    assert json.loads(isoinfo_read(iso, "/openstack/latest/meta_data.json"))["uuid"] == str(vm.uuid)
