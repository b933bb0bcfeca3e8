"""A VM's customization on the sim driver: copied at request time, media attached by the create or
clone task, removed when the guest reports or at the next power-off (then `unknown`)."""

import json
import os
from io import BytesIO
from pathlib import Path

import pycdlib
import pytest

from console.core.errors import InvalidRequest, TooLarge
from console.core.models import SimDomain, Task
from console.models import VM, CdRom, Image, Network
from console.services import hosts, power, vms
from customization.models import CustomizationScript, VMCustomization
from customization.services import lifecycle
from customization.services.lifecycle import CustomizationRequest
from tests.customization.conftest import CLOUD_CONFIG, UNATTEND, spec

Status = VMCustomization.Status


def power_action(actor, run_tasks, vm: VM, action: str) -> None:
    vm.refresh_from_db()
    power.request_power(actor, vm, action)
    run_tasks()


def test_create_with_a_script_attaches_media_and_phone_home_removes_them(cluster, actor, run_tasks, create_vm,
                                                                         settings):
    settings.PUBLIC_URL = "https://console.example"
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG, key_values={"role": "web"}), power_on=True)
    customization = vm.customization
    assert customization.status == Status.RUNNING  # powered on with the media in
    iso = Path(customization.iso_path)
    assert iso.is_file() and iso.stat().st_mode & 0o777 == 0o600
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {str(customization.cdrom_slot): str(iso)}
    assert CdRom.objects.get(vm=vm, slot=customization.cdrom_slot).purpose == CdRom.Purpose.CUSTOMIZATION
    paths = [f["path"] for f in customization.media_files]
    assert paths == ["openstack/latest/meta_data.json", "openstack/latest/user_data",
                     "openstack/latest/vendor_data.json"]

    token = _token_from_media(iso)
    lifecycle.phone_home(token, {"instance_id": str(vm.uuid), "hostname": "web-1"}, "10.0.0.5")
    run_tasks()
    customization.refresh_from_db()
    assert customization.status == Status.SUCCEEDED
    assert customization.message == "cloud-init phoned home from web-1"
    assert not iso.exists() and customization.cdrom_slot is None
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {}
    assert not CdRom.objects.filter(vm=vm, purpose=CdRom.Purpose.CUSTOMIZATION).exists()
    assert Task.objects.filter(kind="vm.customization.remove", status="succeeded").count() == 1
    with pytest.raises(Exception, match="unknown or was used already"):
        lifecycle.phone_home(token, {}, "10.0.0.5")  # one time only


def _token_from_media(iso: Path) -> str:
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    out = BytesIO()
    reader.get_file_from_iso_fp(out, joliet_path="/openstack/latest/vendor_data.json")
    reader.close()
    vendor = json.loads(out.getvalue())["cloud-init"]
    url = next(line.split("url: ")[1] for line in vendor.splitlines() if "url: " in line)
    assert url.startswith("https://console.example/customization/phone-home/")
    return url.rstrip("/").rsplit("/", 1)[1]


def test_power_off_without_a_report_ends_as_unknown_and_removes_the_media(cluster, actor, run_tasks, create_vm):
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG))
    customization = vm.customization
    assert customization.status == Status.MEDIA_ATTACHED and not customization.media_files[-1]["path"].endswith(
        "vendor_data.json")  # the default public URL is loopback: no phone_home
    power_action(actor, run_tasks, vm, "power-on")
    customization.refresh_from_db()
    assert customization.status == Status.RUNNING
    power_action(actor, run_tasks, vm, "reboot")
    customization.refresh_from_db()
    assert customization.status == Status.RUNNING and Path(customization.iso_path).is_file()
    power_action(actor, run_tasks, vm, "power-off")
    customization.refresh_from_db()
    assert customization.status == Status.UNKNOWN
    assert customization.message == "the VM powered off before its guest reported"
    assert customization.iso_path == "" and SimDomain.objects.get(uuid=vm.uuid).cdroms == {}


def test_a_guest_that_shuts_itself_down_is_seen_by_the_reconcile(cluster, actor, run_tasks, create_vm):
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG), power_on=True)
    SimDomain.objects.filter(uuid=vm.uuid).update(power_state="off")
    assert hosts.reconcile_power_states() == 1
    assert VMCustomization.objects.get(vm=vm).status == Status.UNKNOWN
    run_tasks()  # the removal runs as a task on the VM's host
    assert VMCustomization.objects.get(vm=vm).iso_path == "" and SimDomain.objects.get(uuid=vm.uuid).cdroms == {}
    assert Task.objects.get(kind="vm.customization.remove").queue == vm.host.queue


def test_the_agent_report_ends_it_with_the_guests_message(cluster, actor, run_tasks, create_vm):
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG), power_on=True)
    lifecycle.report(vm, "failed", "runcmd exited 2")
    run_tasks()
    customization = VMCustomization.objects.get(vm=vm)
    assert (customization.status, customization.message, customization.iso_path) == ("failed", "runcmd exited 2", "")
    lifecycle.report(vm, "succeeded")  # the first end stands
    assert VMCustomization.objects.get(vm=vm).status == "failed"
    power_action(actor, run_tasks, vm, "power-off")
    assert VMCustomization.objects.get(vm=vm).status == "failed"


def test_nocloud_media_and_static_ips(cluster, actor, run_tasks, create_vm):
    lan = Network.objects.get(name="lan")
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG, datasource="nocloud"),
                   nics=[vms.NicSpec(network=lan, ip="auto"), vms.NicSpec(network=lan)])
    assert [f["path"] for f in vm.customization.media_files] == ["meta-data", "network-config", "user-data"]


def test_sysprep_fills_computer_name_and_key_values(cluster, actor, run_tasks, create_vm):
    vm = create_vm(CustomizationRequest(content=UNATTEND, key_values={"org": "R&D"}), guest_os="windows",
                   name="win-7")
    customization = vm.customization
    assert (customization.kind, customization.datasource) == ("sysprep", "sysprep")
    assert [f["path"] for f in customization.media_files] == ["autounattend.xml", "unattend.xml"]


def test_the_content_is_copied_so_a_later_edit_changes_nothing(cluster, actor, run_tasks, create_vm):
    script = CustomizationScript.objects.create(name="base", content=CLOUD_CONFIG)
    vm = create_vm(CustomizationRequest(script=str(script.uuid)))
    CustomizationScript.objects.filter(pk=script.pk).update(content="#!/bin/sh\nrm -rf /\n")
    customization = VMCustomization.objects.get(vm=vm)
    assert customization.content == CLOUD_CONFIG and customization.script == script
    assert customization.source == "library script base"
    script.refresh_from_db()
    assert script.usage_count == 1
    create_vm(CustomizationRequest(script="base"), name="web-2")  # by name too, as the CLI gives it
    script.refresh_from_db()
    assert script.usage_count == 2


def test_clone_gets_its_own_media_and_hostname(cluster, actor, run_tasks, create_vm):
    source = create_vm()
    task = vms.request_clone(actor, source, "web-1-clone", hostname="clone1",
                             options={"customization": CustomizationRequest(content=CLOUD_CONFIG)})
    run_tasks()
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    clone = VM.objects.get(uuid=task.entity_uuid)
    assert clone.hostname == "clone1" and clone.customization.status == Status.MEDIA_ATTACHED
    assert str(clone.uuid) in clone.customization.iso_path


def test_delete_removes_the_media_file(cluster, actor, run_tasks, create_vm):
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG))
    iso = Path(vm.customization.iso_path)
    vms.request_delete(actor, vm)
    run_tasks()
    assert not iso.exists() and not iso.parent.exists()
    assert not VMCustomization.objects.exists()


def test_a_failed_create_leaves_no_media(cluster, actor, run_tasks):
    image = Image.objects.get(name="base-disk")
    task = vms.request_create_vm(actor, spec(image=image, customization=CustomizationRequest(content=CLOUD_CONFIG)))
    image.path.unlink()  # the copy fails in the task
    run_tasks()
    task.refresh_from_db()
    assert task.status == "failed"
    assert not VM.objects.exists() and not VMCustomization.objects.exists()
    assert not list(Path(cluster.storage_containers.get().path, "vms").rglob("*.iso"))


BAD_REQUESTS = [
    (CustomizationRequest(content="#cloud-config\nusers: [\n"), "customization.content", "line 3, column 1: YAML"),
    (CustomizationRequest(content="#cloud-config\nruncmd: 5\n"), "customization.content", "line 2, column 9"),
    (CustomizationRequest(content=b"#cloud-config\nhostname: caf\xe9\n"), "customization.content", "not UTF-8"),
    (CustomizationRequest(content=b"\x1f\x8b broken"), "customization.content", "gzip data is corrupt"),
    (CustomizationRequest(content="#!/bin/sh\n", script="base"), "customization", "exactly one"),
    (CustomizationRequest(script="missing"), "customization.script", "no saved script"),
    (CustomizationRequest(content="#!/bin/sh\n", datasource="sysprep"), "customization.datasource", "choose"),
    (CustomizationRequest(content="#!/bin/sh\n", key_values={"1bad": "x"}), "customization.key_values", "a key"),
    (CustomizationRequest(kind="sysprep", content=UNATTEND), "customization.key_values", "{{ org }}"),
    (CustomizationRequest(kind="sysprep", content='<!DOCTYPE x [<!ENTITY a "b">]><unattend/>'),
     "customization.content", "DTDs"),
    (CustomizationRequest(storage_path="facet://default/../etc/passwd"), "customization.storage_path", "'..'"),
]


@pytest.mark.parametrize(("request_", "field", "message"), BAD_REQUESTS)
def test_bad_customization_refuses_the_request_and_stores_nothing(cluster, actor, request_, field, message):
    with pytest.raises(InvalidRequest) as error:
        vms.request_create_vm(actor, spec(customization=request_))
    assert message in " ".join(error.value.errors[field])
    assert not VM.objects.exists() and not Task.objects.exists() and not VMCustomization.objects.exists()


def test_a_name_with_no_hostname_needs_one_given(cluster, actor):
    with pytest.raises(InvalidRequest) as error:
        vms.request_create_vm(actor, spec(name="web_1", customization=CustomizationRequest(content=CLOUD_CONFIG)))
    assert "'web_1' is not a valid hostname" in error.value.errors["hostname"][0]
    assert not VM.objects.exists()
    vms.request_create_vm(actor, spec(name="web_1", hostname="web", customization=CustomizationRequest(
        content=CLOUD_CONFIG)))
    assert VM.objects.get().hostname == "web"


def test_sysprep_computer_name_is_at_most_15_characters(cluster, actor):
    request = CustomizationRequest(content=UNATTEND, key_values={"org": "x"})
    with pytest.raises(InvalidRequest) as error:
        vms.request_create_vm(actor, spec(name="a-very-long-windows-name", guest_os="windows", customization=request))
    assert "allows 15 characters" in error.value.errors["hostname"][0]


def test_storage_paths_stay_inside_the_container(cluster, actor, tmp_path, create_vm):
    root = Path(cluster.storage_containers.get().path)
    (root / "scripts").mkdir()
    (root / "scripts" / "web.yaml").write_text(CLOUD_CONFIG)
    outside = tmp_path / "secret.yaml"
    outside.write_text(CLOUD_CONFIG)
    (root / "scripts" / "escape.yaml").symlink_to(outside)
    (root / "scripts" / "inside.yaml").symlink_to(root / "scripts" / "web.yaml")
    (root / "scripts" / "big.yaml").write_bytes(b"#cloud-config\n" + b"#" * (100 * 1024 * 1024))
    os.mkfifo(root / "scripts" / "fifo")

    vm = create_vm(CustomizationRequest(storage_path="facet://default/scripts/web.yaml"))
    assert vm.customization.source == "facet://default/scripts/web.yaml"
    create_vm(CustomizationRequest(storage_path="facet://default/scripts/inside.yaml"), name="web-2")
    for path, error_class, message in [
        ("facet://default/scripts/escape.yaml", InvalidRequest, "leads out of storage container"),
        ("facet://default/scripts/big.yaml", TooLarge, "over the limit"),
        ("facet://default/scripts/fifo", InvalidRequest, "not a regular file"),
        ("facet://default/scripts/none.yaml", InvalidRequest, "cannot read"),
        ("facet://other/web.yaml", InvalidRequest, "no storage container 'other'"),
        ("/etc/passwd", InvalidRequest, "facet://CONTAINER/path"),
    ]:
        with pytest.raises(error_class, match=message):
            vms.request_create_vm(actor, spec(name="web-3", customization=CustomizationRequest(storage_path=path)))
    assert not VM.objects.filter(name="web-3").exists()
