"""What a task's reader (a Viewer among them) sees of a failure: one sentence, an error id that finds the
traceback in the worker log, no hypervisor key paths (issue 14 item 11)."""

import logging
import re

import pytest

from console.core.models import Task
from console.models import VM, Host, Image
from console.services import power, vms
from tests.conftest import client_for

GiB = 1024**3
KEYED_URI = "qemu+ssh://root@hv1.invalid:2222/system?keyfile=/etc/facet/ssh/id_ed25519&no_verify=1"


def test_an_unexpected_error_shows_a_sentence_and_logs_the_traceback_under_its_id(cluster, actor, run_tasks,
                                                                                   caplog):
    image = Image.objects.get(name="base-disk")
    task = vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=GiB, image=image))
    vm_dir = image.storage_container.resolve(f"vms/{task.entity_uuid}")
    vm_dir.parent.mkdir(parents=True, exist_ok=True)
    vm_dir.write_text("a file where the VM's directory goes")  # nothing the code expects: an unexpected error
    with caplog.at_level(logging.ERROR, logger="console.core.tasks"):
        run_tasks()
    task = Task.objects.get(kind="vm.create")
    assert task.status == "failed"
    match = re.match(r"The task stopped on an unexpected error; see the worker log, error id ([0-9a-f]{12})\.",
                     task.error)
    assert match, task.error
    assert "Traceback" not in task.error and str(vm_dir) not in task.error
    # The undo trips on the same file: that too is a sentence and an id.
    assert re.search(r"\(Cleaning up after the failure failed too; see the worker log, error id [0-9a-f]{12}\.\)$",
                     task.error)
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info and str(task.uuid) in logged[0].getMessage()


def test_hypervisor_uris_show_no_key_paths_below_admin(cluster, actor, admin, viewer, client, run_tasks):
    pytest.importorskip("libvirt")
    host = Host.objects.get(name="host-1")
    Host.objects.filter(pk=host.pk).update(driver_uri=KEYED_URI)
    Host.objects.exclude(pk=host.pk).update(enabled=False)
    vm = VM.objects.create(cluster=cluster, name="web-1", vcpus=1, memory_bytes=GiB, host=host,
                           power_state="off")
    power.request_power(actor, vm, "power-on")
    run_tasks()
    error = Task.objects.get(kind="vm.power").error
    assert "qemu+ssh://hv1.invalid:2222/system" in error
    assert "keyfile" not in error and "/etc/facet/ssh" not in error and "root@" not in error

    seen_by = {user.username: client_for(user).get(f"/api/v1/hosts/{host.uuid}/").json()["driver_uri"]
               for user in (admin, viewer)}
    assert seen_by == {admin.username: KEYED_URI, viewer.username: "qemu+ssh://hv1.invalid:2222/system"}
    client.force_login(viewer)
    dashboard = client.get("/").content.decode()
    assert "qemu+ssh://hv1.invalid:2222/system" in dashboard and "keyfile" not in dashboard
