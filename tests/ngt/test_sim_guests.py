"""Simulated guests: `manage.py sim_guests` runs the real agent for each running VM of a sim host with Guest
Tools, following power and the tools disc; the demo seed mounts Guest Tools on a few VMs so `make run` shows
live links."""

import sys
from pathlib import Path

import pytest

from console.models import VM
from console.services import demo
from customization.models import VMCustomization
from customization.services import lifecycle
from customization.services.lifecycle import CustomizationRequest
from ngt.models import GuestTools
from ngt.services import demo as ngt_demo
from tests.ngt import test_daemon
from tests.ngt.test_agent import REPOSITORY
from tests.ngt.test_daemon import state
from tests.ngt.test_guest_customization import RUNCMD_ERROR, cloud_init_ran
from tests.realparts import wait_for

# The Guest Tools Service fixtures, shared.
mounted_vm, service, short_data_dir = test_daemon.mounted_vm, test_daemon.service, test_daemon.short_data_dir


def test_the_demo_mounts_guest_tools_on_a_few_running_vms_of_the_first_host(db, settings, tmp_path,
                                                                             django_capture_on_commit_callbacks):
    settings.DATA_DIR = tmp_path
    demo.seed(24)
    cluster = VM.objects.first().cluster
    with django_capture_on_commit_callbacks(execute=True):  # seed_demo runs outside any transaction
        said = ngt_demo.mount_guest_tools(cluster)
    mounted = GuestTools.objects.filter(enabled=True, iso_mounted=True).select_related("vm")
    assert len(mounted) == ngt_demo.DEMO_GUESTS and all(vm_name in said for vm_name in (g.vm.name for g in mounted))
    assert {(g.vm.host.name, g.vm.power_state) for g in mounted} == {("host-1", "on")}
    assert ngt_demo.mount_guest_tools(cluster) == ""  # seeding again adds nothing


@pytest.mark.slow
def test_sim_guests_follow_power_and_guest_tools(short_data_dir, service, celery_processes, mounted_vm):
    vm, _ = mounted_vm
    VM.objects.filter(pk=vm.pk).update(power_state=VM.PowerState.ON)
    service(vm.host.name, "leading:")
    celery_processes.start("sim-guests", f"{sys.executable} {REPOSITORY / 'manage.py'} sim_guests "
                           f"--host {vm.host.name} --interval 0.5", None)
    wait_for(lambda: state(vm).link_active, 30, "the simulated guest to link")
    assert not state(vm).iso_mounted  # linked with the mounted ISO's serial: ejected
    assert f"sim guest of {vm.name}" in celery_processes.logs()

    VM.objects.filter(pk=vm.pk).update(power_state=VM.PowerState.OFF)
    wait_for(lambda: not state(vm).link_active, 30, "the link to end with the guest powered off")


@pytest.mark.slow
def test_a_sim_guests_cloud_init_result_reaches_the_console_over_serial(short_data_dir, service, celery_processes,
                                                                        mounted_vm, settings):
    """The real agent in a simulated guest: cloud-init's failed runcmd, written where cloud-init writes it, shows
    on the VM as `failed` with cloud-init's lines, and the media go at once, with no phone_home possible
    (loopback FACET_PUBLIC_URL): the service sends the removal task to the broker itself (it used to reach no
    broker, and without a beat's reaper the media stayed)."""
    vm, _ = mounted_vm
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    lifecycle.record([(vm, lifecycle.prepare(CustomizationRequest(content="#cloud-config\nruncmd: [[\"false\"]]\n"),
                                             cluster=vm.cluster, guest_os="linux", hostname="web-1", name="web-1"))])
    lifecycle.attach_media([vm])
    VM.objects.filter(pk=vm.pk).update(power_state=VM.PowerState.ON)
    VMCustomization.objects.filter(vm=vm).update(status="running")
    media = Path(VMCustomization.objects.get(vm=vm).iso_path)
    service(vm.host.name, "leading:")
    celery_processes.start("sim-guest", f"{sys.executable} {REPOSITORY / 'manage.py'} sim_guest {vm.name} "
                           "--heartbeat 0.5", "on serial")
    wait_for(lambda: state(vm).link_active, 20, "the link over serial")
    cloud_init_ran(short_data_dir / "sim-guests" / str(vm.uuid) / "cloud-init", errors=[RUNCMD_ERROR])
    wait_for(lambda: VMCustomization.objects.get(vm=vm).status == "failed", 20, "the guest's result")
    assert VMCustomization.objects.get(vm=vm).message == RUNCMD_ERROR
    celery_processes.worker()  # runs the removal the report queued on the VM's host; no beat resends it
    wait_for(lambda: not media.exists() and not vm.cdroms.filter(purpose="customization").exists(), 15,
             "the worker to eject and delete the customization media")
