"""Day-2 operations on the sim driver, through the services and the API: edit with ETag/If-Match and pending
changes, pause/resume, disks (add, copy, linked clone, grow, detach, delete), NICs (add, remove, move), images
imported from a local HTTP server, and adopting domains that Facet did not define."""

import hashlib
import http.server
import subprocess
import threading
from pathlib import Path

import pytest

from console.core.models import AuditEvent, SimDomain, Task
from console.models import VM, Host, Image, Network, Nic, VirtualDisk
from console.services import power, vm_devices, vm_edit, vms

GiB, MiB = 1024**3, 1024**2


def ran(run_tasks, task: Task) -> Task:
    run_tasks()
    task.refresh_from_db()
    return task


def succeeded(run_tasks, task: Task) -> Task:
    task = ran(run_tasks, task)
    assert task.status == Task.Status.SUCCEEDED, task.error
    return task


def sim(vm: VM) -> dict:
    return SimDomain.objects.get(uuid=vm.uuid).definition


def on(vm: VM, actor, run_tasks) -> VM:
    succeeded(run_tasks, power.request_power(actor, vm, "power-on"))
    vm.refresh_from_db()
    return vm


# Edit


def test_an_edit_of_a_vm_that_is_off_applies_at_once_and_is_audited(vm, actor, run_tasks):
    task = vm_edit.request_update(actor, vm, {"name": "web-2", "description": "front", "vcpus": 4,
                                              "memory_bytes": 2 * GiB})
    succeeded(run_tasks, task)
    vm.refresh_from_db()
    assert (vm.name, vm.description, vm.vcpus, vm.memory_bytes, vm.pending) == ("web-2", "front", 4, 2 * GiB, {})
    assert vm.version == 2
    assert (sim(vm)["name"], sim(vm)["vcpus"], sim(vm)["memory_bytes"]) == ("web-2", 4, 2 * GiB)
    event = AuditEvent.objects.get(action="vm.update")
    assert event.detail["changes"]["vcpus"] == 4 and event.detail["before"]["vcpus"] == 1


def test_a_running_vm_takes_vcpus_and_memory_up_to_its_maxima_at_once(vm, actor, run_tasks):
    vm = on(vm, actor, run_tasks)
    assert (vm.max_vcpus, vm.max_memory_bytes) == (8, 2 * GiB)  # the host's CPUs, twice its memory
    succeeded(run_tasks, vm_edit.request_update(actor, vm, {"vcpus": 3, "memory_bytes": 2 * GiB}))
    vm.refresh_from_db()
    assert (vm.vcpus, vm.memory_bytes, vm.pending) == (3, 2 * GiB, {})


def test_beyond_its_maxima_a_running_vm_gets_a_pending_change_applied_when_it_powers_off(vm, actor, run_tasks):
    vm = on(vm, actor, run_tasks)
    task = succeeded(run_tasks, vm_edit.request_update(actor, vm, {"memory_bytes": 4 * GiB}))
    assert "next power cycle" in task.message
    vm.refresh_from_db()
    assert (vm.memory_bytes, vm.pending) == (GiB, {"vcpus": 1, "memory_bytes": 4 * GiB})
    assert vm.max_memory_bytes == 4 * GiB and sim(vm)["max_memory_bytes"] == 4 * GiB  # in the definition
    succeeded(run_tasks, power.request_power(actor, vm, "power-off"))
    vm.refresh_from_db()
    assert (vm.memory_bytes, vm.pending) == (4 * GiB, {})


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"vcpus": 0}, "vcpus", "1 to 256"),
    ({"vcpus": 9}, "vcpus", "more than host host-1 has (8)"),
    ({"memory_bytes": 17 * GiB}, "memory_bytes", "more than host host-1 has"),
    ({"memory_bytes": 1}, "memory_bytes", "at least"),
    ({"name": "bad name"}, "name", "letters"),
    ({"boot_order": ["floppy"]}, "boot_order", "hd, cdrom, network"),
    ({"guest_os": "windows"}, "guest_os", "cannot be edited"),
])
def test_bad_edits_name_the_field_and_change_nothing(vm, actor, changes, field, words):
    from console.core.errors import ServiceError

    with pytest.raises(ServiceError) as error:
        vm_edit.request_update(actor, vm, changes)
    assert words in " ".join(error.value.errors[field])
    assert not Task.objects.filter(kind="vm.update").exists()
    vm.refresh_from_db()
    assert vm.version == 1


def test_memory_beyond_what_the_host_has_free_is_refused_for_a_running_vm(vm, actor, run_tasks):
    vm = on(vm, actor, run_tasks)
    VM.objects.create(cluster=vm.cluster, name="hog", host=vm.host, vcpus=1, memory_bytes=14 * GiB,
                      power_state=VM.PowerState.ON)
    with pytest.raises(vm_edit.ServiceError) as error:
        vm_edit.request_update(actor, vm, {"memory_bytes": 3 * GiB})
    assert error.value.status_code == 409 and "free for this VM" in str(error.value)


def test_pause_and_resume(vm, actor, run_tasks):
    vm = on(vm, actor, run_tasks)
    succeeded(run_tasks, power.request_power(actor, vm, "pause"))
    vm.refresh_from_db()
    assert vm.power_state == "paused"
    succeeded(run_tasks, power.request_power(actor, vm, "resume"))
    vm.refresh_from_db()
    assert vm.power_state == "on"


def test_patch_with_a_stale_etag_is_412_and_the_fresh_one_goes_through(vm, api, run_tasks):
    url = f"/api/v1/vms/{vm.uuid}/"
    got = api.get(url)
    etag = got["ETag"]
    assert etag == '"1"' and got.json()["version"] == 1 and got.json()["max_vcpus"] == 8
    first = api.patch(url, {"vcpus": 2}, format="json", HTTP_IF_MATCH=etag)
    assert first.status_code == 202, first.json()
    assert first["ETag"] == '"2"'
    second = api.patch(url, {"description": "mine"}, format="json", HTTP_IF_MATCH=etag)
    assert second.status_code == 412
    assert "changed meanwhile" in second.json()["If-Match"][0]
    run_tasks()
    vm.refresh_from_db()
    assert (vm.vcpus, vm.description) == (2, "")
    bad = api.patch(url, {"vcpus": 1000}, format="json", HTTP_IF_MATCH='"2"')
    assert bad.status_code == 400 and "vcpus" in bad.json()


def test_a_viewer_cannot_edit(vm, viewer):
    from tests.conftest import client_for

    assert client_for(viewer).patch(f"/api/v1/vms/{vm.uuid}/", {"vcpus": 2}, format="json").status_code == 403


# Disks


def test_an_empty_disk_is_added_grown_and_deleted(vm, actor, run_tasks, api):
    response = api.post(f"/api/v1/vms/{vm.uuid}/disks/", {"size_bytes": 2 * MiB}, format="json")
    assert response.status_code == 202, response.json()
    run_tasks()
    disk = vm.disks.get(index=0)
    assert disk.path.stat().st_size == 2 * MiB
    response = api.patch(f"/api/v1/vms/{vm.uuid}/disks/0/", {"size_bytes": 4 * MiB}, format="json")
    assert response.status_code == 202
    run_tasks()
    assert disk.path.stat().st_size == 4 * MiB
    shrink = api.patch(f"/api/v1/vms/{vm.uuid}/disks/0/", {"size_bytes": MiB}, format="json")
    assert shrink.status_code == 400 and "only grows" in shrink.json()["size_bytes"][0]
    assert disk.path.stat().st_size == 4 * MiB
    # Disk 0 is the boot disk: first the boot order changes.
    boot = api.delete(f"/api/v1/vms/{vm.uuid}/disks/0/")
    assert boot.status_code == 409 and "boot disk" in boot.json()["disk"][0]
    succeeded(run_tasks, vm_edit.request_update(actor, vm, {"boot_order": ["network", "hd"]}))
    vm.refresh_from_db()
    assert sim(vm)["boot_order"] == ["network", "hd"]
    assert api.delete(f"/api/v1/vms/{vm.uuid}/disks/0/").status_code == 202
    run_tasks()
    assert not vm.disks.exists() and not disk.path.exists()
    assert {"vm.disk.add", "vm.disk.grow", "vm.disk.delete"} <= set(AuditEvent.objects.values_list("action", flat=True))


def test_a_copy_and_a_linked_clone_of_an_image_and_a_detach_keeping_the_data(cluster, actor, run_tasks):
    vms.request_create_vm(actor, vms.VMSpec(name="db", vcpus=1, memory_bytes=GiB, disk_sizes=[MiB]))
    run_tasks()
    vm = VM.objects.get(name="db")
    image = Image.objects.get(name="base-disk")
    succeeded(run_tasks, vm_devices.request_add_disk(actor, vm, image=image))
    copy = vm.disks.get(index=1)
    assert copy.path.read_bytes()[:10] == b"bootsector" and copy.size_bytes == 8 * MiB
    succeeded(run_tasks, vm_devices.request_add_disk(actor, vm, image=image, linked=True))
    linked = vm.disks.get(index=2)
    assert linked.backing_file == image.file_name
    with pytest.raises(vm_devices.Conflict, match="base of linked-clone disks"):
        from console.services import images

        images.delete_image(actor, image)
    with pytest.raises(vm_devices.InvalidRequest, match="at least"):
        vm_devices.request_add_disk(actor, vm, image=image, size_bytes=MiB)
    succeeded(run_tasks, vm_devices.request_remove_disk(actor, vm, copy, keep=True))
    kept = Image.objects.get(name="db-disk1")
    assert kept.path == copy.path and kept.path.read_bytes()[:10] == b"bootsector"
    with pytest.raises(vm_devices.Conflict, match="overlay"):
        vm_devices.request_remove_disk(actor, vm, linked, keep=True)


def test_a_templates_disk_that_backs_linked_clones_is_not_grown_and_says_what_would_change(vm, actor, run_tasks):
    succeeded(run_tasks, vm_devices.request_add_disk(actor, vm, size_bytes=MiB))
    succeeded(run_tasks, vms.request_clone(actor, vm, "child", linked=True))
    with pytest.raises(vm_devices.Conflict) as error:
        vm_devices.request_grow_disk(actor, vm, vm.disks.get(), 2 * MiB)
    assert "linked clones (child)" in str(error.value)


def test_a_disk_that_cannot_be_made_leaves_no_row_and_no_file(vm, actor, run_tasks, monkeypatch):
    from console.core.drivers.sim import SimDriver

    def refuse(*args):
        raise vm_devices.Conflict("the hypervisor refused")

    monkeypatch.setattr(SimDriver, "plug_disk", refuse)  # a refusal is what we test: no real part refuses here
    task = ran(run_tasks, vm_devices.request_add_disk(actor, vm, size_bytes=MiB))
    assert task.status == Task.Status.FAILED and "refused" in task.error
    assert not VirtualDisk.objects.filter(vm=vm).exists()
    assert not list(Path(vm.cluster.storage_containers.get().path, "vms", str(vm.uuid)).glob("disk*"))


# NICs


def test_nics_are_added_with_unique_macs_moved_and_removed_handing_the_address_back(vm, actor, run_tasks, api):
    lan = Network.objects.get(name="lan")
    dmz = Network.objects.create(cluster=vm.cluster, name="dmz", cidr="10.1.0.0/24", pool_start="10.1.0.10",
                                 pool_end="10.1.0.20")
    vm = on(vm, actor, run_tasks)
    response = api.post(f"/api/v1/vms/{vm.uuid}/nics/", {"network": str(lan.uuid), "ip": "auto"}, format="json")
    assert response.status_code == 202, response.json()
    run_tasks()
    nic = vm.nics.get()
    assert nic.ip == "10.0.0.100" and sim(vm)["nics"] == {nic.mac: "lan"}
    taken = api.post(f"/api/v1/vms/{vm.uuid}/nics/", {"network": str(lan.uuid), "mac": nic.mac}, format="json")
    assert taken.status_code == 409 and "already used" in taken.json()["mac"][0]
    moved = api.patch(f"/api/v1/vms/{vm.uuid}/nics/0/", {"network": str(dmz.uuid), "ip": "auto"}, format="json")
    assert moved.status_code == 202
    run_tasks()
    nic.refresh_from_db()
    assert (nic.network, nic.ip) == (dmz, "10.1.0.10") and sim(vm)["nics"] == {nic.mac: "dmz"}
    assert api.delete(f"/api/v1/vms/{vm.uuid}/nics/0/").status_code == 202
    run_tasks()
    assert not vm.nics.exists() and sim(vm)["nics"] == {}
    # The address is the pool's again.
    succeeded(run_tasks, vm_devices.request_add_nic(actor, vm, dmz, ip="auto"))
    assert vm.nics.get().ip == "10.1.0.10"


def test_the_last_nic_of_a_vm_whose_customization_reports_back_stays(cluster, actor, run_tasks):
    from customization.models import VMCustomization

    lan = Network.objects.get(name="lan")
    vms.request_create_vm(actor, vms.VMSpec(name="c1", vcpus=1, memory_bytes=GiB, nics=[vms.NicSpec(lan)]))
    run_tasks()
    vm = VM.objects.get(name="c1")
    VMCustomization.objects.create(vm=vm, kind="cloud-init", datasource="config-drive", content="#cloud-config",
                                   source="pasted", status="media-attached")
    with pytest.raises(vm_devices.Conflict, match="last NIC"):
        vm_devices.request_remove_nic(actor, vm, vm.nics.get())


# Images from a URL


@pytest.fixture
def web_server(tmp_path, settings):
    """A local HTTP server serving tmp_path/www, whose loopback network the test allows."""
    import ipaddress

    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.FACET_IMAGE_IMPORT_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_qcow2_image_is_imported_checked_and_converted(cluster, api, run_tasks, web_server):
    root, base = web_server
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(root / "cloud.qcow2"), "64M"], check=True)
    digest = hashlib.sha256((root / "cloud.qcow2").read_bytes()).hexdigest()
    response = api.post("/api/v1/images/import/", {"url": f"{base}/cloud.qcow2", "sha256": digest}, format="json")
    assert response.status_code == 202, response.json()
    task = Task.objects.get(uuid=response.json()["uuid"])
    succeeded(run_tasks, task)
    image = Image.objects.get(name="cloud.qcow2")
    assert (image.kind, image.disk_format, image.sha256) == ("disk", "qcow2", digest)
    assert image.path.is_file() and not list(image.path.parent.glob("*.part"))
    assert AuditEvent.objects.filter(action="image.import").exists()


def test_a_vmdk_image_is_converted_to_qcow2(cluster, actor, run_tasks, web_server):
    from console.services import image_import

    root, base = web_server
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(root / "app.vmdk"), "16M"], check=True)
    succeeded(run_tasks, image_import.request_import(actor, f"{base}/app.vmdk"))
    image = Image.objects.get(name="app.vmdk")
    assert image.disk_format == "qcow2" and image.file_name.endswith(".qcow2")


def test_a_checksum_mismatch_keeps_nothing(cluster, actor, run_tasks, web_server):
    from console.services import image_import

    root, base = web_server
    (root / "disk.raw").write_bytes(b"\0" * MiB)
    task = ran(run_tasks, image_import.request_import(actor, f"{base}/disk.raw", sha256="0" * 64))
    assert task.status == Task.Status.FAILED and "SHA-256" in task.error
    assert not Image.objects.filter(name="disk.raw").exists()
    assert not list(Path(cluster.storage_containers.get().path, "images").glob("*-*"))


def test_a_qcow2_with_a_backing_file_is_refused(cluster, actor, run_tasks, web_server, tmp_path):
    from console.services import image_import

    root, base = web_server
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw",
                    str(root / "evil.qcow2")], check=True)
    task = ran(run_tasks, image_import.request_import(actor, f"{base}/evil.qcow2"))
    assert task.status == Task.Status.FAILED and "backing file" in task.error
    assert not Image.objects.filter(name="evil.qcow2").exists()


def test_image_imports_the_size_limit_applies_while_downloading(cluster, actor, run_tasks, web_server, settings):
    from console.services import image_import

    root, base = web_server
    (root / "big.raw").write_bytes(b"\1" * (2 * MiB))
    settings.FACET_IMAGE_UPLOAD_LIMIT = MiB
    task = ran(run_tasks, image_import.request_import(actor, f"{base}/big.raw"))
    assert task.status == Task.Status.FAILED and "limit" in task.error
    assert not list(Path(cluster.storage_containers.get().path, "images").glob("*.part"))


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://example.com/a.img", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("http://127.0.0.1:8000/a.img", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://10.1.2.3/a.img", "private"),
    ("http://[::1]/a.img", "loopback"),
])
def test_urls_that_are_not_public_http_are_refused_naming_the_url(cluster, api, url, words):
    response = api.post("/api/v1/images/import/", {"url": url}, format="json")
    assert response.status_code == 400
    assert words in response.json()["url"][0]
    assert not Task.objects.filter(kind="image.import").exists()


# Adopt


def _foreign_domain(cluster, path: str, **definition) -> SimDomain:
    return SimDomain.objects.create(uuid="6f1c8a8e-2b7d-4c2e-9a59-5d7a4f3e2b10", host_name="host-1",
                                    power_state="on", definition={
                                        "name": "legacy", "vcpus": 2, "memory_bytes": 512 * MiB,
                                        "disks": {path: "raw"}, "nics": {"52:54:00:aa:bb:cc": "lan"},
                                        **definition})


def test_an_unmanaged_domain_is_listed_adopted_and_powered_by_facet(cluster, api, run_tasks):
    storage_container = cluster.storage_containers.get()
    disk = storage_container.resolve("legacy/root.raw")
    disk.parent.mkdir()
    disk.write_bytes(b"\0" * MiB)
    _foreign_domain(cluster, str(disk))
    host = Host.objects.get(name="host-1")
    listed = api.get(f"/api/v1/hosts/{host.uuid}/unmanaged/").json()
    assert [(d["name"], d["problems"]) for d in listed] == [("legacy", [])]
    response = api.post(f"/api/v1/hosts/{host.uuid}/adopt/", {"uuid": listed[0]["uuid"]}, format="json")
    assert response.status_code == 202, response.json()
    run_tasks()
    vm = VM.objects.get(name="legacy")
    assert (str(vm.uuid), vm.power_state, vm.vcpus, vm.memory_bytes) == (listed[0]["uuid"], "on", 2, 512 * MiB)
    assert vm.disks.get().file_name == "legacy/root.raw" and vm.nics.get().mac == "52:54:00:aa:bb:cc"
    assert api.get(f"/api/v1/hosts/{host.uuid}/unmanaged/").json() == []
    assert api.post(f"/api/v1/vms/{vm.uuid}/power/", {"action": "power-off"}, format="json").status_code == 202
    run_tasks()
    vm.refresh_from_db()
    assert vm.power_state == "off"


def test_a_domain_whose_disk_is_outside_every_container_is_not_adopted(cluster, api, tmp_path):
    outside = tmp_path / "elsewhere.raw"
    outside.write_bytes(b"\0" * MiB)
    domain = _foreign_domain(cluster, str(outside))
    host = Host.objects.get(name="host-1")
    response = api.post(f"/api/v1/hosts/{host.uuid}/adopt/", {"uuid": str(domain.uuid)}, format="json")
    assert response.status_code == 409
    assert "outside every storage container" in response.json()["uuid"][0]
    assert not VM.objects.filter(name="legacy").exists() and not Nic.objects.filter(mac="52:54:00:aa:bb:cc").exists()
