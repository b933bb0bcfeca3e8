"""A VM's Guest Tools identity is its own: making it a template revokes its certificate and removes its tools
ISO (the agent in its disk stays), and every clone gets a new certificate pair on a configuration-only ISO
in its clone task."""

from console.core.models import AuditEvent, SimDomain
from console.models import VM
from console.services import templates
from ngt.models import GuestTools, VMCertificate
from tests.ngt.test_services import mount, tools_iso


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
