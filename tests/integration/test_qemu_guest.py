"""The product on a real guest: a Debian VM (tests/guest_image.py) created on QEMU through the console's
services with a #cloud-config that installs the Guest Tools from their ISO, and a real Guest Tools Service
for its host that reaches the agent through the VM's channel socket. Under TCG on two cores the guest boots
in about a minute and cloud-init takes a few more; the waits are generous and poll the state, and a failure
prints the guest's serial console."""

from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring

from console.core.drivers import get_driver
from console.core.tasks import sending
from console.models import VM, Image
from console.services import power, processes, vms
from customization.services.lifecycle import CustomizationRequest
from ngt.daemon import commands
from ngt.models import GuestTools
from ngt.services import guest_tools
from tests.guest_image import ensure_guest_image
from tests.integration.conftest import cluster_image, domain_name, run, serial_console
from tests.ngt import conftest as ngt_fixtures
from tests.ngt.test_agent import free_vip
from tests.realparts import wait_for

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
pytestmark = pytest.mark.slow
# The Guest Tools tests' fixtures, shared: the agent's packages for the ISO, and a CA key file of our own.
built_packages, guest_tools_packages = ngt_fixtures.built_packages, ngt_fixtures.guest_tools_packages
ca_key_file = ngt_fixtures.ca_key_file
GiB, MiB = 1024**3, 1024**2
BOOT_AND_INSTALL_SECONDS = 900
SHUTDOWN_SECONDS = 300

CLOUD_CONFIG = """\
#cloud-config
runcmd:
  - mount -o ro LABEL=FACET_TOOLS /mnt
  - sh /mnt/installer/linux/install.sh
"""


@pytest.fixture
def guest_image(qemu_cluster) -> Image:
    return cluster_image(qemu_cluster, ensure_guest_image(), "debian-12")


def test_a_debian_guest_installs_the_tools_links_and_shuts_down_through_its_agent(
        qemu_cluster, guest_image, guest_tools_packages, celery_processes, redis_url, settings, actor, run_tasks,
        monkeypatch):
    settings.REDIS_URL = redis_url
    monkeypatch.setattr(sending, "send", lambda task: None)  # run_tasks runs them here
    qemu_cluster.virtual_ip = free_vip()
    qemu_cluster.save()
    customization = CustomizationRequest(content=CLOUD_CONFIG)  # cloud-init on a ConfigDrive
    spec = vms.VMSpec(name=domain_name("debian"), vcpus=2, memory_bytes=GiB, image=guest_image,
                      options={"customization": customization})
    task = run(vms.request_create_vm(actor, spec), run_tasks)
    vm = VM.objects.select_related("host").get(uuid=task.entity_uuid)
    run(guest_tools.request_mount(actor, vm), run_tasks)
    tools_iso = Path(vm.cdroms.get(purpose="guest-tools").iso_path)

    address = free_vip()
    celery_processes.start("service-qemu-1", processes.guest_tools_service_command(vm.host.name)
                           + f" --address {address}", "leading:")
    run(power.request_power(actor, vm, "power-on"), run_tasks)
    driver = get_driver(vm.host.driver_uri)
    try:
        assert driver.state(vm) == "on"
        wait_for(lambda: GuestTools.objects.get(vm=vm).link_active, BOOT_AND_INSTALL_SECONDS,
                 "the guest to boot, install the Guest Tools from their ISO and link over its channel")
        state = GuestTools.objects.get(vm=vm)
        assert state.hostname == vm.hostname  # set by cloud-init from the ConfigDrive
        assert "Debian" in state.guest_os
        info = commands.send_command(str(vm.uuid), "get_info", timeout=30, client=commands.redis_client(redis_url))
        assert info["ok"] and info["hostname"] == vm.hostname and info["kernel"].endswith("-cloud-amd64")

        wait_for(lambda: not GuestTools.objects.get(vm=vm).iso_mounted, 60, "the console to eject the tools ISO")
        assert not tools_iso.exists()
        domain = libvirt.open(vm.host.driver_uri).lookupByUUIDString(str(vm.uuid))
        media = {source.get("file") for source in fromstring(domain.XMLDesc(0)).iterfind("devices/disk/source")}
        assert str(tools_iso) not in media  # ejected from the running guest
        assert not vm.cdroms.filter(purpose="guest-tools").exists()

        run(guest_tools.request_guest_power(actor, vm, "guest-shutdown"), run_tasks)
        wait_for(lambda: driver.state(vm) == "off", SHUTDOWN_SECONDS, "the guest to power itself off")
    except AssertionError:
        print(f"--- serial console of {vm.name}\n{serial_console(vm)[-8000:]}")
        raise
    finally:
        if driver.state(vm) == "on":
            driver.power(vm, "power-off")
    run(vms.request_delete(actor, vm), run_tasks)
    assert driver.state(vm) == "unknown"
