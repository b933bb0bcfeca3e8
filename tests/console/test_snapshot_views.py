"""The Snapshots panel of the VM page and its confirmation pages."""

import pytest

from console.core.models import Task
from console.models import VM, Image, Snapshot
from console.services import power, snapshots, vms

MiB = 1024**2


@pytest.fixture
def disk_vm(cluster, actor, run_tasks):
    vms.request_create_vm(actor, vms.VMSpec(name="web-1", vcpus=1, memory_bytes=256 * MiB,
                                            image=Image.objects.get(name="base-disk")))
    run_tasks()
    vm = VM.objects.get(name="web-1")
    for name in ("first", "second"):
        snapshots.request_create(actor, vm, name, description=f"{name} description")
        run_tasks()
    return vm


def test_the_panel_draws_the_tree_and_the_vm_page_loads_it(client, admin, disk_vm):
    client.force_login(admin)
    page = client.get(f"/vms/{disk_vm.uuid}/").content.decode()
    assert f'hx-get="/vms/{disk_vm.uuid}/snapshots/"' in page
    panel = client.get(f"/vms/{disk_vm.uuid}/snapshots/").content.decode()
    assert panel.index("first") < panel.index("second")
    assert 'aria-level="1"' in panel and 'aria-level="2"' in panel and "you are here" in panel
    assert "second description" in panel and "consistent" in panel
    assert "Take snapshot" in panel


def test_a_viewer_sees_the_tree_without_the_buttons(client, viewer, disk_vm):
    client.force_login(viewer)
    panel = client.get(f"/vms/{disk_vm.uuid}/snapshots/").content.decode()
    assert "second" in panel and "Take snapshot" not in panel and "Revert" not in panel
    first = Snapshot.objects.get(name="first")
    assert client.post(f"/vms/{disk_vm.uuid}/snapshots/{first.uuid}/revert/").status_code == 403


def test_take_a_snapshot_from_the_panel_and_a_bad_name_says_why(client, admin, disk_vm, run_tasks):
    client.force_login(admin)
    answer = client.post(f"/vms/{disk_vm.uuid}/snapshots/new/", {"name": "third"}, follow=True)
    assert "Task started: Take Snapshot" in answer.content.decode()
    answer = client.post(f"/vms/{disk_vm.uuid}/snapshots/new/", {"name": "bad name"}, follow=True)
    assert "Snapshot name:" in answer.content.decode()


def test_revert_of_a_running_vm_asks_first_and_says_the_running_state_is_lost(client, admin, actor, disk_vm,
                                                                              run_tasks):
    power.request_power(actor, disk_vm, "power-on")
    run_tasks()
    client.force_login(admin)
    first = Snapshot.objects.get(name="first")
    url = f"/vms/{disk_vm.uuid}/snapshots/{first.uuid}/revert/"
    confirm = client.get(url).content.decode()
    assert "losing its running state" in confirm and 'name="confirm" value="yes"' in confirm
    assert not Task.objects.filter(kind="snapshot.revert").exists()  # asking is not doing

    refused = client.post(url, follow=True).content.decode()  # without the confirmation the page asked for
    assert "running state" in refused and not Task.objects.filter(kind="snapshot.revert").exists()
    client.post(url, {"confirm": "yes"})
    (task,) = run_tasks()
    assert task.kind == "snapshot.revert" and task.status == "succeeded"
    assert Snapshot.objects.get(name="first").is_current


def test_delete_asks_first(client, admin, disk_vm, run_tasks):
    client.force_login(admin)
    second = Snapshot.objects.get(name="second")
    url = f"/vms/{disk_vm.uuid}/snapshots/{second.uuid}/delete/"
    assert "merged with what stands on them" in client.get(url).content.decode()
    client.post(url)
    run_tasks()
    assert not Snapshot.objects.filter(name="second").exists()


def test_clone_page_from_a_snapshot(client, admin, disk_vm, run_tasks):
    client.force_login(admin)
    first = Snapshot.objects.get(name="first")
    page = client.get(f"/vms/{disk_vm.uuid}/clone/?snapshot={first.uuid}").content.decode()
    assert "at snapshot first" in page
    client.post(f"/vms/{disk_vm.uuid}/clone/", {"name": "copy", "snapshot": str(first.uuid)})
    run_tasks()
    assert Task.objects.get(kind="vm.clone").status == "succeeded"
