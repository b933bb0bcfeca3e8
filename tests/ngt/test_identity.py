"""A VM's Guest Tools identity is its own: making it a template revokes its certificate and removes its tools
ISO (the agent in its disk stays), and every clone gets a new certificate pair on a configuration-only ISO
in its clone task."""

import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from console.core.drivers import DriverError, get_driver
from console.core.errors import InvalidRequest
from console.core.models import AuditEvent, SimDomain, Task
from console.models import VM
from console.services import templates, vms
from customization.models import VMCustomization
from customization.services.lifecycle import CustomizationRequest
from ngt.models import GuestTools, VMCertificate
from ngt.services import guest_tools, identity
from tests.ngt.conftest import iso_file
from tests.ngt.test_services import iso_paths, mount, tools_iso

GiB, MiB = 1024**3, 1024**2


def make_template(actor, vm: VM, run_tasks) -> VM:
    task = templates.request_make_template(actor, vm)
    run_tasks()
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    vm.refresh_from_db()
    return task


def test_making_a_template_revokes_its_certificate_and_removes_its_tools_iso(vm, actor, run_tasks):
    mount(actor, vm, run_tasks)
    iso, certificate = tools_iso(vm), GuestTools.objects.get(vm=vm).certificate
    GuestTools.objects.filter(vm=vm).update(installed_version="1.0.0", link_active=True)
    task = make_template(actor, vm, run_tasks)
    assert f"certificate {certificate.serial} revoked and tools ISO removed" in task.message
    certificate.refresh_from_db()
    assert certificate.revoked
    assert not iso.exists() and not vm.cdroms.filter(purpose="guest-tools").exists()
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {}
    state = GuestTools.objects.get(vm=vm)
    # Still enabled, with the agent in its disk: its clones get a fresh identity by default.
    assert state.enabled and state.installed_version == "1.0.0"
    assert not state.iso_mounted and state.certificate is None and not state.link_active
    assert AuditEvent.objects.filter(action="ngt.certificate.revoke", entity_uuid=vm.uuid,
                                     detail__serials=[certificate.serial]).exists()


def test_a_vm_without_guest_tools_becomes_a_template_untouched(vm, actor, run_tasks):
    task = make_template(actor, vm, run_tasks)
    assert task.message == "web-1 is a template"
    assert not GuestTools.objects.filter(vm=vm).exists() and not VMCertificate.objects.exists()


# --- A clone gets its own identity -----------------------------------------------------------------------------
def golden(actor, run_tasks, cluster, capabilities=("vss-snapshot",)) -> VM:
    """A template with Guest Tools (installed, then made a template) and a disk."""
    vms.request_create_vm(actor, vms.VMSpec(name="golden", vcpus=1, memory_bytes=GiB, disk_sizes=[MiB]))
    run_tasks()
    source = VM.objects.get(name="golden")
    guest_tools.set_capabilities(actor, source, list(capabilities))
    mount(actor, source, run_tasks)
    make_template(actor, source, run_tasks)
    return source


def clone(actor, source: VM, name: str, run_tasks, **options) -> VM:
    task = vms.request_clone(actor, source, name, **options)
    run_tasks()
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    return VM.objects.get(name=name)


def test_each_clone_of_a_template_with_guest_tools_gets_its_own_certificate_pair_in_its_clone_task(
        cluster, actor, run_tasks, tmp_path):
    source = golden(actor, run_tasks, cluster)
    clones = [clone(actor, source, f"web-{n}", run_tasks, power_on=True) for n in (1, 2)]
    assert not Task.objects.filter(kind="ngt.mount", entity_uuid__in=[vm.uuid for vm in clones]).exists()
    serials = set()
    for vm in clones:
        state = GuestTools.objects.select_related("certificate").get(vm=vm)
        assert state.enabled and state.iso_mounted and not state.certificate.revoked
        assert state.capabilities == ["vss-snapshot"]  # the source's
        iso = tools_iso(vm)
        # Configuration only: the agent is in the cloned disk.
        assert {path.split("/")[0] for path in iso_paths(iso)} == {"config"}
        config = json.loads(iso_file(iso, "config/ngt.json"))
        assert config["vm_uuid"] == str(vm.uuid) and config["certificate_serial"] == state.certificate.serial
        assert config["capabilities"] == ["vss-snapshot"]
        (tmp_path / "ca.pem").write_bytes(iso_file(iso, "config/ca.pem"))
        (tmp_path / "client.pem").write_bytes(iso_file(iso, "config/client.pem"))
        verify = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "ca.pem", tmp_path / "client.pem"],
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr
        key = serialization.load_pem_private_key(iso_file(iso, "config/client.key"), None)
        certificate = x509.load_pem_x509_certificate(state.certificate.certificate_pem.encode())
        assert key.public_key().public_numbers() == certificate.public_key().public_numbers()
        # In the domain from its definition, so powered on with it.
        assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {"0": str(iso)} and vm.power_state == "on"
        serials.add(state.certificate.serial)
    assert len(serials) == 2
    assert GuestTools.objects.get(vm=source).certificate is None  # the template's own stays gone


def test_mount_false_gives_the_clone_no_guest_tools(cluster, actor, run_tasks):
    source = golden(actor, run_tasks, cluster)
    vm = clone(actor, source, "web-1", run_tasks, options={"guest_tools": identity.GuestToolsRequest(mount=False)})
    assert not GuestTools.objects.filter(vm=vm).exists() and not VMCertificate.objects.filter(vm=vm).exists()
    assert not vm.cdroms.filter(purpose="guest-tools").exists()


def test_a_clone_of_a_vm_without_guest_tools_gets_none_unless_asked_and_then_the_installer_too(vm, actor, run_tasks):
    plain = clone(actor, vm, "plain", run_tasks)
    assert not GuestTools.objects.filter(vm=plain).exists()
    asked = clone(actor, vm, "asked", run_tasks, options={"guest_tools": identity.GuestToolsRequest(
        mount=True, capabilities=["self-service-restore"])})
    state = GuestTools.objects.get(vm=asked)
    assert state.capabilities == ["self-service-restore"] and state.certificate is not None
    assert "installer/README" in iso_paths(tools_iso(asked))


def test_a_new_vm_may_ask_for_guest_tools_but_a_template_may_not(cluster, actor, run_tasks):
    task = vms.request_create_vm(actor, vms.VMSpec(name="new", vcpus=1, memory_bytes=GiB, options={
        "guest_tools": identity.GuestToolsRequest(mount=True)}))
    run_tasks()
    task.refresh_from_db()
    assert task.status == "succeeded", task.error
    assert GuestTools.objects.get(vm__name="new").iso_mounted
    with pytest.raises(InvalidRequest) as caught:
        vms.request_create_vm(actor, vms.VMSpec(name="tpl", vcpus=1, memory_bytes=GiB, is_template=True, options={
            "guest_tools": identity.GuestToolsRequest(mount=True)}))
    assert caught.value.errors == {"guest_tools.mount": [
        "a template never runs: its clones get Guest Tools, each with an identity of its own"]}
    assert not VM.objects.filter(name="tpl").exists()


def test_an_unknown_capability_refuses_the_clone_and_creates_nothing(cluster, actor, run_tasks):
    source = golden(actor, run_tasks, cluster)
    with pytest.raises(InvalidRequest) as caught:
        vms.request_clone(actor, source, "web-1", options={"guest_tools": identity.GuestToolsRequest(
            capabilities=["telepathy"])})
    assert caught.value.errors == {"guest_tools.capabilities": [
        "unknown capability 'telepathy'; use self-service-restore or vss-snapshot"]}
    assert not VM.objects.filter(name="web-1").exists()


def test_a_rerun_of_the_clone_task_issues_no_second_certificate(cluster, actor, run_tasks):
    source = golden(actor, run_tasks, cluster)
    vm = clone(actor, source, "web-1", run_tasks)
    first = GuestTools.objects.get(vm=vm).certificate
    identity.mount_new_identity([vm])
    assert VMCertificate.objects.filter(vm=vm).count() == 1 and GuestTools.objects.get(vm=vm).certificate == first


def test_a_failed_clone_leaves_no_tools_iso_nor_valid_certificate(cluster, actor, run_tasks, monkeypatch,
                                                                  django_capture_on_commit_callbacks):
    source = golden(actor, run_tasks, cluster)
    monkeypatch.setattr("console.core.drivers.sim.SimDriver.create", lambda self, vm: (_ for _ in ()).throw(
        DriverError("the hypervisor refused the definition")))
    task = vms.request_clone(actor, source, "web-1")
    with django_capture_on_commit_callbacks(execute=True):  # the ISO goes once the VM's removal commits
        for _ in range(5):  # the framework's retries, then its undo
            run_tasks()
    task.refresh_from_db()
    assert task.status == "failed" and not VM.objects.filter(name="web-1").exists()
    directory = Path(source.disks.first().path).parents[2] / guest_tools.ISO_DIRECTORY
    assert not list(directory.glob("*.iso"))
    assert not VMCertificate.objects.filter(revoked=False).exists()


def test_a_clone_with_customization_and_guest_tools_boots_with_both_media(cluster, actor, run_tasks):
    source = golden(actor, run_tasks, cluster)
    vm = clone(actor, source, "web-1", run_tasks, power_on=True, options={
        "customization": CustomizationRequest(content="#cloud-config\nruncmd: [[\"true\"]]\n")})
    media = {cdrom.purpose: cdrom for cdrom in vm.cdroms.all()}
    assert set(media) == {"guest-tools", "customization"}
    assert SimDomain.objects.get(uuid=vm.uuid).cdroms == {str(c.slot): c.iso_path for c in media.values()}
    assert VMCustomization.objects.get(vm=vm).status == "running"


def test_the_api_clone_takes_guest_tools(cluster, actor, run_tasks, api):
    source = golden(actor, run_tasks, cluster)
    response = api.post(f"/api/v1/vms/{source.uuid}/clone/", {"name": "web-1", "guest_tools": {"mount": False}},
                        format="json")
    assert response.status_code == 202, response.json()
    response = api.post(f"/api/v1/vms/{source.uuid}/clone/", {
        "name": "web-2", "guest_tools": {"capabilities": ["self-service-restore"]}}, format="json")
    assert response.status_code == 202, response.json()
    bad = api.post(f"/api/v1/vms/{source.uuid}/clone/", {"name": "web-3", "guest_tools": {"capabilities": ["x"]}},
                   format="json")
    assert bad.status_code == 400 and "guest_tools.capabilities" in bad.json()
    run_tasks()
    assert not GuestTools.objects.filter(vm__name="web-1").exists()
    assert GuestTools.objects.get(vm__name="web-2").capabilities == ["self-service-restore"]


def test_the_clone_form_has_a_guest_tools_section(cluster, actor, run_tasks, client, operator):
    source = golden(actor, run_tasks, cluster)
    client.force_login(operator)
    page = client.get(f"/vms/{source.uuid}/clone/").content.decode()
    assert "<legend>Guest Tools</legend>" in page and 'name="guest_tools_mount"' in page
    response = client.post(f"/vms/{source.uuid}/clone/", {"name": "web-1", "guest_tools_mount": "no"})
    assert response.status_code == 302
    client.post(f"/vms/{source.uuid}/clone/", {"name": "web-2"})
    run_tasks()
    assert not GuestTools.objects.filter(vm__name="web-1").exists()
    assert GuestTools.objects.get(vm__name="web-2").certificate is not None


def test_the_command_line_clone_takes_guest_tools(facet_as_admin, cluster, actor, run_tasks):
    source = golden(actor, run_tasks, cluster)
    code, _, err = facet_as_admin("vm", "clone", f"vm-id={source.uuid}", "name=web-1", "guest-tools=false")
    assert code == 0, err
    code, _, err = facet_as_admin("vm", "clone", f"vm-id={source.uuid}", "name=web-2",
                                  "guest-tools-capabilities=self-service-restore")
    assert code == 0, err
    run_tasks()
    assert not GuestTools.objects.filter(vm__name="web-1").exists()
    assert GuestTools.objects.get(vm__name="web-2").capabilities == ["self-service-restore"]


def test_bulk_mount_takes_config_only(cluster, actor, run_tasks, api):
    for name in ("a", "b"):
        vms.request_create_vm(actor, vms.VMSpec(name=name, vcpus=1, memory_bytes=GiB))
    run_tasks()
    response = api.post("/api/v1/vms/bulk/", {"action": "guest-tools-mount", "filter": {}, "all": True,
                                              "params": {"config_only": True}}, format="json")
    assert response.status_code == 202, response.json()
    run_tasks()
    for vm in VM.objects.all():
        assert {path.split("/")[0] for path in iso_paths(tools_iso(vm))} == {"config"}
    bad = api.post("/api/v1/vms/bulk/", {"action": "power-on", "filter": {}, "all": True,
                                         "params": {"config_only": True}},
                   format="json")
    assert bad.status_code == 400 and bad.json() == {
        "params.config_only": ["power-on takes no parameter 'config_only' (it takes: none)"]}
    bad = api.post("/api/v1/vms/bulk/", {"action": "guest-tools-mount", "filter": {}, "all": True,
                                         "params": {"config_only": "yes"}}, format="json")
    assert bad.status_code == 400 and bad.json() == {"params.config_only": ["give a bool"]}


def test_on_libvirt_a_clone_is_defined_with_both_media_and_runs(cluster, actor, run_tasks):
    """On libvirt's test:///default hypervisor: the clone's domain holds the tools ISO and the customization
    media from its definition (IDE takes no drive once it runs)."""
    libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    from defusedxml.ElementTree import fromstring

    source = golden(actor, run_tasks, cluster)
    target = cluster.hosts.get(name="host-2")
    cluster.hosts.filter(pk=target.pk).update(driver_uri="test:///default")
    target.refresh_from_db()
    vm = clone(actor, source, "web-1", run_tasks, host=target, power_on=True, options={
        "customization": CustomizationRequest(content="#cloud-config\nruncmd: [[\"true\"]]\n")})
    try:
        domain = libvirt.open("test:///default").lookupByUUIDString(str(vm.uuid))
        drives = {d.find("target").get("dev"): d.find("source").get("file")
                  for d in fromstring(domain.XMLDesc(0)).iterfind("devices/disk[@device='cdrom']")}
        media = {cdrom.purpose: cdrom for cdrom in vm.cdroms.all()}
        assert drives == {"hda": media["guest-tools"].iso_path, "hdb": media["customization"].iso_path}
        assert domain.isActive() and vm.power_state == "on"
    finally:
        get_driver("test:///default").delete(vm)


def test_callers_in_code_give_the_option_as_the_apis_object(cluster, actor, run_tasks):
    """The bulk clone's way: `options={"guest_tools": {"mount": ..., "capabilities": [...]}}`."""
    source = golden(actor, run_tasks, cluster)
    vm = clone(actor, source, "web-1", run_tasks, options={"guest_tools": {
        "mount": True, "capabilities": ["self-service-restore"]}})
    assert GuestTools.objects.get(vm=vm).capabilities == ["self-service-restore"]
    assert VMCertificate.objects.filter(vm=vm, revoked=False).count() == 1
    skipped = clone(actor, source, "web-2", run_tasks, options={"guest_tools": {"mount": False}})
    assert not GuestTools.objects.filter(vm=skipped).exists()
    for bad, field in (({"mount": "yes"}, "guest_tools.mount"), ({"mount": True, "iso": 1}, "guest_tools.iso"),
                       ({"capabilities": "vss-snapshot"}, "guest_tools.capabilities")):
        with pytest.raises(InvalidRequest) as caught:
            vms.request_clone(actor, source, "web-3", options={"guest_tools": bad})
        assert list(caught.value.errors) == [field]
    assert not VM.objects.filter(name="web-3").exists()
