"""The Guest Tools REST API: shapes, status codes, permissions."""

import uuid

import pytest

from console.models import VM
from ngt.models import GuestTools
from tests.conftest import client_for

BASE = "/api/v1/vms/{}/guest-tools/"


def test_get_before_anything_shows_a_blank_state(api, vm):
    answer = api.get(BASE.format(vm.uuid))
    assert answer.status_code == 200
    data = answer.json()
    assert data["enabled"] is False and data["iso_mounted"] is False and data["capabilities"] == []
    assert data["certificate_serial"] is None and data["available_version"]
    assert set(data) >= {"installed_version", "link_active", "last_seen", "guest_os", "hostname", "ip_addresses",
                         "certificate_not_after"}


def test_mount_answers_202_and_the_iso_shows_among_the_cd_roms(api, vm, run_tasks):
    answer = api.post(BASE.format(vm.uuid) + "mount/", {"config_only": True}, format="json")
    assert answer.status_code == 202 and answer.json()["kind"] == "ngt.mount"
    run_tasks()
    data = api.get(BASE.format(vm.uuid)).json()
    assert data["enabled"] and data["iso_mounted"] and len(data["certificate_serial"]) == 40
    cdroms = api.get(f"/api/v1/vms/{vm.uuid}/").json()["cdroms"]
    assert [c["purpose"] for c in cdroms] == ["guest-tools"] and cdroms[0]["iso_path"].endswith(".iso")


@pytest.mark.parametrize("operation", ["enable", "mount", "unmount", "disable"])
def test_operations_answer_202_with_their_task(api, vm, run_tasks, operation):
    if operation in ("unmount", "disable"):
        api.post(BASE.format(vm.uuid) + "mount/")
        run_tasks()
    answer = api.post(BASE.format(vm.uuid) + f"{operation}/")
    assert answer.status_code == 202 and answer.json()["kind"] == f"ngt.{operation}"
    run_tasks()
    assert api.get(f"/api/v1/tasks/{answer.json()['uuid']}/").json()["status"] == "succeeded"


def test_patch_changes_only_capabilities(api, vm):
    answer = api.patch(BASE.format(vm.uuid), {"capabilities": ["vss-snapshot"]}, format="json")
    assert answer.status_code == 200 and answer.json()["capabilities"] == ["vss-snapshot"]
    assert api.patch(BASE.format(vm.uuid), {"enabled": True}, format="json").status_code == 400
    refused = api.patch(BASE.format(vm.uuid), {"capabilities": ["teleport"]}, format="json")
    assert refused.status_code == 400 and "teleport" in refused.json()["capabilities"][0]
    assert not GuestTools.objects.get(vm=vm).enabled


def test_bad_requests(api, vm):
    assert api.get(BASE.format(uuid.uuid4())).status_code == 404
    assert api.post(BASE.format(uuid.uuid4()) + "mount/").status_code == 404
    VM.objects.filter(pk=vm.pk).update(is_template=True)
    refused = api.post(BASE.format(vm.uuid) + "mount/")
    assert refused.status_code == 409 and "template" in refused.json()["vm"][0]


def test_concurrent_mount_is_refused(api, vm):
    assert api.post(BASE.format(vm.uuid) + "mount/").status_code == 202
    second = api.post(BASE.format(vm.uuid) + "mount/")
    assert second.status_code == 409 and "already" in second.json()["vm"][0]


def test_bulk_mount_through_the_vm_bulk_endpoint(api, vm, run_tasks):
    answer = api.post("/api/v1/vms/bulk/", {"action": "guest-tools-mount", "uuids": [str(vm.uuid)]}, format="json")
    assert answer.status_code == 202
    run_tasks()
    parent = api.get(f"/api/v1/tasks/{answer.json()['uuid']}/").json()
    assert parent["status"] == "succeeded" and parent["children"][0]["kind"] == "ngt.mount"


def test_ca_is_shown_without_its_key(api, cluster):
    data = api.get("/api/v1/guest-tools/ca/").json()
    assert data["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert set(data) == {"certificate", "fingerprint_sha256", "not_after"}
    assert "PRIVATE" not in str(data)


def test_list_of_states(api, vm, run_tasks):
    api.post(BASE.format(vm.uuid) + "enable/")
    run_tasks()
    data = api.get("/api/v1/guest-tools/?enabled=true").json()
    assert data["count"] == 1 and data["results"][0]["vm_name"] == "web-1"


@pytest.mark.parametrize(("role", "method", "path", "allowed"), [
    ("viewer", "get", "", True),
    ("viewer", "get", "ca", True),
    ("viewer", "post", "mount/", False),
    ("viewer", "patch", "", False),
    ("operator", "post", "mount/", True),
    ("operator", "patch", "", True),
    (None, "get", "", False),
    (None, "get", "ca", False),
])
def test_permissions(vm, request, role, method, path, allowed):
    client = client_for(request.getfixturevalue(role) if role else None)
    url = "/api/v1/guest-tools/ca/" if path == "ca" else BASE.format(vm.uuid) + path
    body = {"capabilities": []} if method == "patch" else None
    status = getattr(client, method)(url, body, format="json").status_code
    if allowed:
        assert status in (200, 202)
    else:
        assert status == (401 if role is None else 403)


def test_schema_lists_the_guest_tools_endpoints(api, cluster):
    schema = api.get("/api/schema/").content
    assert b"/api/v1/vms/{uuid}/guest-tools/mount/" in schema and b"/api/v1/guest-tools/ca/" in schema


def test_leader_location_comes_from_the_lease(api, cluster, redis_url, settings, monkeypatch):
    import json

    import redis

    from ngt.daemon import commands

    client = redis.Redis.from_url(redis_url)
    monkeypatch.setattr(commands, "redis_client", lambda: client)
    client.delete(commands.LEASE_KEY)
    assert api.get("/api/v1/guest-tools/leader/").status_code == 503
    client.set(commands.LEASE_KEY, json.dumps({"host": "host-1", "address": "127.0.0.2"}))
    assert api.get("/api/v1/guest-tools/leader/").json() == {"host": "host-1", "address": "127.0.0.2"}
    client.delete(commands.LEASE_KEY)


def test_the_vm_list_filters_by_guest_tools_state(api, client, admin, vm):
    GuestTools.objects.create(vm=vm, enabled=True, link_active=True)
    linked = api.get("/api/v1/vms/?guest_tools=link-active").json()
    assert [item["name"] for item in linked["results"]] == [vm.name]
    assert api.get("/api/v1/vms/?guest_tools=not-installed").json()["count"] == 0
    assert "guest_tools" in api.get("/api/schema/?format=json").content.decode()
    client.force_login(admin)
    page = client.get("/vms/?guest_tools=not-installed")
    assert b"No VMs match" in page.content and b'name="guest_tools"' in page.content
