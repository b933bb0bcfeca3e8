"""The Guest Tools panel of a VM's page and the Guest Tools page."""

from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from console.core.models import Task
from ngt.models import GuestTools, VMCertificate
from ngt.services import guest_tools


def panel(client, vm):
    return client.get(f"/vms/{vm.uuid}/guest-tools/panel/")


def test_the_panel_replaces_the_placeholder_and_a_viewer_gets_no_forms(client, vm, viewer):
    client.force_login(viewer)
    answer = panel(client, vm)
    assert answer.status_code == 200
    html = answer.content.decode()
    assert '<section class="card" id="guest-tools-panel">' in html and "not enabled" in html
    assert "<form" not in html


def test_an_operator_mounts_from_the_panel_without_javascript(client, vm, operator, run_tasks):
    client.force_login(operator)
    html = panel(client, vm).content.decode()
    assert "mounted under /mnt/facet-restore/SNAPSHOT/" in html and "freezes its writable filesystems" in html
    assert 'name="config_only"' in html and "csrfmiddlewaretoken" in html
    answer = client.post(f"/vms/{vm.uuid}/guest-tools/mount/", {"config_only": "on"})
    assert answer.status_code == 302 and answer["Location"] == f"/vms/{vm.uuid}/"
    task = Task.objects.get(kind="ngt.mount")
    assert task.params["config_only"] is True
    run_tasks()
    html = panel(client, vm).content.decode()
    assert "mounted in CD-ROM 0" in html and "Remount" in html and "Unmount" in html


def test_capabilities_are_saved_from_checkboxes(client, vm, operator):
    client.force_login(operator)
    answer = client.post(f"/vms/{vm.uuid}/guest-tools/capabilities/", {"capabilities": ["vss-snapshot"]})
    assert answer.status_code == 302
    assert GuestTools.objects.get(vm=vm).capabilities == ["vss-snapshot"]
    client.post(f"/vms/{vm.uuid}/guest-tools/capabilities/", {"capabilities": ["nonsense"]})
    assert GuestTools.objects.get(vm=vm).capabilities == ["vss-snapshot"]


def test_a_refused_operation_comes_back_as_a_message(client, vm, operator):
    client.force_login(operator)
    answer = client.post(f"/vms/{vm.uuid}/guest-tools/unmount/", follow=True)
    assert b"no Guest Tools ISO is mounted" in answer.content


def test_a_viewer_may_not_post(client, vm, viewer):
    client.force_login(viewer)
    assert client.post(f"/vms/{vm.uuid}/guest-tools/mount/").status_code == 403
    assert client.get(f"/vms/{vm.uuid}/guest-tools/mount/").status_code == 405


def test_the_guest_tools_page_lists_vms_by_state_with_the_ca_and_expiring_certificates(client, vm, actor, viewer,
                                                                                       run_tasks):
    guest_tools.request_mount(actor, vm)
    run_tasks()
    VMCertificate.objects.update(not_after=timezone.now() + timedelta(days=3))
    GuestTools.objects.update(installed_version="0.9.0")
    client.force_login(viewer)
    html = client.get("/guest-tools/").content.decode()
    assert vm.cluster.guest_tools_ca.fingerprint_sha256 in html
    assert "Certificates expiring within 30 days" in html and html.count(vm.name) >= 2
    assert "upgrade available" in html
    assert client.get("/guest-tools/?state=upgrade-available").context["page"].paginator.count == 1
    assert client.get("/guest-tools/?state=link-active").context["page"].paginator.count == 0


def test_the_page_says_when_the_ca_key_does_not_open(client, vm, actor, viewer, run_tasks, ca_key_file):
    guest_tools.request_enable(actor, vm)
    run_tasks()
    ca_key_file.write_text("garbage")
    client.force_login(viewer)
    assert str(Path(ca_key_file)) in client.get("/guest-tools/").content.decode()
