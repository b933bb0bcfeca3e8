"""Console pages: status, content and what each role may see and do."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from console.core.models import ApiToken, AuditEvent, Task
from console.models import VM, Image, Network
from console.services import demo
from tests.conftest import make_user

GiB = 1024**3


def logged_in(client, user):
    client.force_login(user)
    return client


PAGES = ["/", "/vms/", "/templates/", "/images/", "/networks/", "/storage/", "/tasks/", "/audit/", "/settings/",
         "/volume-groups/", "/docker-hosts/", "/guest-tools/", "/customization-scripts/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_for_a_viewer_and_sends_anonymous_to_login(client, cluster, viewer, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    response = logged_in(client, viewer).get(path)
    assert response.status_code == 200
    assert b'aria-current="page"' in response.content and b"vera" in response.content


def test_a_user_without_a_role_is_refused(client, cluster):
    assert logged_in(client, make_user("nobody", None)).get("/vms/").status_code == 403


def test_login_page_and_login(client, cluster, admin):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert b"Wrong username or password" in response.content
    response = client.post("/login/", {"username": "alice", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_vm_list_searches_filters_sorts_and_remembers_the_page_size(client, cluster, viewer):
    demo.seed(30)
    client = logged_in(client, viewer)
    body = client.get("/vms/", {"search": "web", "ordering": "-memory_bytes"}).content.decode()
    assert "web-00001" in body and "db-00003" not in body
    body = client.get("/vms/", {"power_state": "", "search": "web"}).content.decode()  # "Any"
    assert "web-00001" in body
    body = client.get("/vms/", {"power_state": "paused"}).content.decode()
    assert "mail-00007" in body and "web-00001" not in body
    client.get("/vms/", {"page_size": "25"})
    assert client.get("/vms/").context["page"].paginator.per_page == 25


def test_vm_list_queries_do_not_grow_with_the_page(client, cluster, viewer):
    demo.seed(220)
    client = logged_in(client, viewer)
    counts = {}
    for size in (25, 200):
        client.get("/vms/", {"page_size": size})  # remembering a new page size writes the session once
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/vms/", {"page_size": size, "ordering": "-vcpus"})
        assert len(response.context["page"].object_list) == size
        counts[size] = len(queries)
    # session, user, role, cluster, running tasks, count, page, nics
    assert counts == {25: 8, 200: 8}


def test_viewers_see_no_actions_and_cannot_post_them(client, vm, viewer):
    client = logged_in(client, viewer)
    body = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert 'value="power-on"' not in body and f"/vms/{vm.uuid}/clone/" not in body
    assert "Create VM" not in client.get("/vms/").content.decode()
    assert client.post(f"/vms/{vm.uuid}/power/", {"action": "power-on"}).status_code == 403
    assert client.post("/vms/bulk/", {"action": "power-on", "uuids": [vm.uuid]}).status_code == 403
    assert client.get("/vms/new/").status_code == 403


def test_operator_powers_a_vm_on_through_a_task(client, vm, operator, run_tasks):
    client = logged_in(client, operator)
    body = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert 'value="power-on"' in body and 'value="power-off"' not in body  # only what the state allows
    response = client.post(f"/vms/{vm.uuid}/power/", {"action": "power-on"}, follow=True)
    assert "Task started" in response.content.decode()
    run_tasks()
    vm.refresh_from_db()
    assert vm.power_state == "on"
    again = client.post(f"/vms/{vm.uuid}/power/", {"action": "power-on"}, follow=True).content.decode()
    assert "already on" in again


def test_bulk_action_on_selected_rows_and_on_the_whole_filter(client, cluster, operator, run_tasks):
    demo.seed(12)
    client = logged_in(client, operator)
    off = list(VM.objects.filter(power_state="off", is_template=False).values_list("uuid", flat=True))
    response = client.post("/vms/bulk/", {"action": "power-on", "scope": "selected", "uuids": off})
    parent = Task.objects.get(kind="vm.bulk")
    assert response["Location"] == f"/tasks/{parent.uuid}/"
    run_tasks()
    parent.refresh_from_db()
    assert parent.status == "succeeded" and parent.children.count() == len(off)
    whole = {"action": "power-off", "scope": "all", "filter": "search=web", "list": "vms"}
    confirm = client.post("/vms/bulk/", whole)
    assert confirm.status_code == 200 and Task.objects.filter(kind="vm.bulk").count() == 1
    client.post("/vms/bulk/", {**whole, "confirmed": "1", "confirm_count": confirm.context["count"]})
    assert Task.objects.filter(kind="vm.bulk").count() == 2
    web_vms = VM.objects.filter(name__contains="web").count()
    assert Task.objects.filter(kind="vm.bulk").first().children.count() == web_vms


def test_a_bulk_action_reaches_only_the_kind_its_list_shows(client, cluster, operator):
    """The Templates page's "All 0 matching the filter" + delete deleted a running VM (issue 14 item 2)."""
    demo.seed(12)
    client = logged_in(client, operator)
    running = VM.objects.filter(is_template=False, power_state="on").order_by("name").first()
    template = VM.objects.filter(is_template=True).order_by("name").first()
    listed = client.get("/templates/", {"search": running.name}).content.decode()
    assert "No templates match" in listed and 'value="all" disabled' in listed
    response = client.post("/vms/bulk/", {"action": "delete", "scope": "all", "list": "templates",
                                          "filter": f"search={running.name}", "confirmed": "1"}, follow=True)
    assert "No template matches the selection; nothing was done." in response.content.decode()
    # Selected rows of the other kind, or a whole filter, from the VMs page: templates stay out of reach.
    client.post("/vms/bulk/", {"action": "delete", "scope": "selected", "list": "vms", "uuids": [template.uuid]})
    confirm = client.post("/vms/bulk/", {"action": "power-on", "scope": "all", "list": "vms",
                                         "filter": f"search={template.name}"}, follow=True)
    assert "No VM matches the selection" in confirm.content.decode()
    # An empty filter on Templates names the templates only; confirmed, it deletes them and no VM.
    templates = VM.objects.filter(is_template=True).count()
    confirm = client.post("/vms/bulk/", {"action": "delete", "scope": "all", "list": "templates", "filter": ""})
    page = confirm.content.decode()
    assert confirm.context["count"] == templates and f"Delete {templates} templates?" in page
    assert template.name in page and running.name not in page and "to confirm" not in page
    assert not Task.objects.filter(kind="vm.bulk").exists()
    client.post("/vms/bulk/", {"action": "delete", "scope": "all", "list": "templates", "filter": "",
                               "confirmed": "1", "confirm_count": str(templates)})
    reached = Task.objects.get(kind="vm.bulk").children.values_list("entity_name", flat=True)
    assert sorted(reached) == sorted(VM.objects.filter(is_template=True).values_list("name", flat=True))
    running.refresh_from_db()
    assert running.power_state == "on"
    # The Templates list offers delete only, and refuses the others.
    refused = client.post("/vms/bulk/", {"action": "power-off", "scope": "selected", "list": "templates",
                                         "uuids": [running.uuid]}, follow=True)
    assert "not a bulk action of the template list" in refused.content.decode()


def test_a_bulk_delete_of_more_than_a_few_needs_the_count_typed(client, cluster, operator):
    demo.seed(14)
    client = logged_in(client, operator)
    web = VM.objects.filter(is_template=False)
    count = web.count()
    assert count > 5
    chosen = {"action": "delete", "scope": "selected", "list": "vms", "uuids": list(web.values_list("uuid", flat=True))}
    confirm = client.post("/vms/bulk/", chosen)
    page = confirm.content.decode()
    assert f"Type {count} to confirm" in page and f"and {count - 10} more" in page
    assert [name for name in confirm.context["names"]] == sorted(web.values_list("name", flat=True))[:10]
    wrong = client.post("/vms/bulk/", {**chosen, "confirmed": "1", "confirm_count": "3"}, follow=True)
    assert f"Count: the selection holds {count} VMs, not 3; look at it again" in wrong.content.decode()
    missing = client.post("/vms/bulk/", {**chosen, "confirmed": "1"}, follow=True)
    assert "send their number as confirm_count" in missing.content.decode()
    assert not Task.objects.filter(kind="vm.bulk").exists()
    client.post("/vms/bulk/", {**chosen, "confirmed": "1", "confirm_count": str(count)})
    assert Task.objects.get(kind="vm.bulk").children.count() == count


def test_create_form_shows_errors_beside_the_fields(client, cluster, operator):
    client = logged_in(client, operator)
    response = client.post("/vms/new/", {
        "name": "big", "vcpus": "2", "memory_gib": "99", "guest_os": "linux",
        "disks-TOTAL_FORMS": "3", "disks-INITIAL_FORMS": "0", "nics-TOTAL_FORMS": "2", "nics-INITIAL_FORMS": "0"})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "memory_gib" in errors and "99 GiB of memory" in errors["memory_gib"][0]
    assert 'id="id_memory_gib-error"' in response.content.decode()
    assert not VM.objects.filter(name="big").exists()


def test_create_form_makes_a_vm_with_a_static_ip(client, cluster, operator):
    client = logged_in(client, operator)
    lan = Network.objects.get(name="lan")
    response = client.post("/vms/new/", {
        "name": "new-vm", "vcpus": "1", "memory_gib": "0.5", "guest_os": "linux",
        "image": Image.objects.get(name="base-disk").pk,
        "disks-TOTAL_FORMS": "3", "disks-INITIAL_FORMS": "0", "disks-0-size_gib": "1",
        "nics-TOTAL_FORMS": "2", "nics-INITIAL_FORMS": "0", "nics-0-network": lan.pk, "nics-0-ip_mode": "static",
        "nics-0-address": "10.0.0.7"})
    vm = VM.objects.get(name="new-vm")
    assert response["Location"] == f"/vms/{vm.uuid}/"
    assert vm.nics.get().ip == "10.0.0.7" and vm.memory_bytes == GiB // 2
    taken = client.post("/vms/new/", {
        "name": "other", "vcpus": "1", "memory_gib": "1", "guest_os": "linux",
        "disks-TOTAL_FORMS": "3", "disks-INITIAL_FORMS": "0", "nics-TOTAL_FORMS": "2", "nics-INITIAL_FORMS": "0",
        "nics-0-network": lan.pk, "nics-0-ip_mode": "static", "nics-0-address": "10.0.0.7"})
    assert taken.status_code == 400
    assert "already assigned" in taken.context["nics"][0].errors["address"][0]


def test_clone_form(client, vm, operator):
    client = logged_in(client, operator)
    assert client.get(f"/vms/{vm.uuid}/clone/").status_code == 200
    duplicate = client.post(f"/vms/{vm.uuid}/clone/", {"name": "web-1"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.context["form"].errors["name"][0]
    client.post(f"/vms/{vm.uuid}/clone/", {"name": "web-2", "linked": "on"})
    assert VM.objects.get(name="web-2").parent == vm


def test_delete_asks_first(client, vm, operator):
    client = logged_in(client, operator)
    assert b"cannot be undone" in client.get(f"/vms/{vm.uuid}/delete/").content
    client.post(f"/vms/{vm.uuid}/delete/")
    assert VM.objects.get(pk=vm.pk).power_state == "deleting"


def test_insert_and_eject_iso_from_the_detail_page(client, vm, operator, run_tasks):
    client = logged_in(client, operator)
    iso = Image.objects.get(name="rescue-iso")
    client.post(f"/vms/{vm.uuid}/insert-iso/", {"image": iso.uuid, "slot": "0"})
    run_tasks()
    assert "rescue-iso" in client.get(f"/vms/{vm.uuid}/").content.decode()
    client.post(f"/vms/{vm.uuid}/eject-iso/", {"slot": "0"})
    run_tasks()
    assert vm.cdroms.get(slot=0).iso_path == ""
    bad = client.post(f"/vms/{vm.uuid}/insert-iso/", {"image": "nonsense"}, follow=True)
    assert "Choose an ISO image." in bad.content.decode()


def test_task_pages_poll_while_running_and_show_errors_in_full(client, vm, viewer):
    client = logged_in(client, viewer)
    task = Task.objects.get(entity_uuid=vm.uuid)
    body = client.get(f"/tasks/{task.uuid}/").content.decode()
    assert "hx-trigger" not in body.split('id="task-panel"')[1].split(">")[0]  # ended: no polling
    Task.objects.filter(pk=task.pk).update(status="running", percent=40)
    panel = client.get(f"/tasks/{task.uuid}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in panel and 'aria-valuenow="40"' in panel
    Task.objects.filter(pk=task.pk).update(status="failed", error="Traceback: everything\nline two")
    assert "line two" in client.get(f"/tasks/{task.uuid}/").content.decode()
    listing = client.get("/tasks/").content.decode()
    assert "web-1" in listing


def test_running_indicator_counts_live_tasks(client, vm, viewer):
    client = logged_in(client, viewer)
    assert b"No running tasks" in client.get("/tasks/running/").content
    Task.objects.update(status="running")
    assert b"1 running" in client.get("/tasks/running/").content


def test_tokens_are_shown_once_and_revocable(client, cluster, viewer):
    client = logged_in(client, viewer)
    client.post("/settings/tokens/", {"name": "laptop"})
    first = client.get("/settings/").content.decode()
    token = ApiToken.objects.get(name="laptop")
    key = first.split('id="new-token-value">')[1].split("<")[0]
    assert ApiToken.hash(key) == token.key_hash
    assert key not in client.get("/settings/").content.decode()  # once only
    client.post(f"/settings/tokens/{token.uuid}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_new_tokens_key_is_shown_once_after_the_redirect_and_never_kept_on_the_server(client, cluster, viewer):
    from django.contrib.sessions.models import Session

    client = logged_in(client, viewer)
    created = client.post("/settings/tokens/", {"name": "laptop"})
    stored = json.dumps([session.get_decoded() for session in Session.objects.all()])
    shown = client.get(created.url)
    key = shown.content.decode().split('id="new-token-value">')[1].split("<")[0]
    assert ApiToken.hash(key) == ApiToken.objects.get(name="laptop").key_hash
    assert "no-store" in shown["Cache-Control"]
    assert key not in stored  # not in the server's session store between the creation and the page
    assert key not in client.get("/settings/").content.decode()


def test_only_admins_manage_users(client, cluster, admin, operator):
    assert logged_in(client, operator).post("/settings/users/", {"username": "x"}).status_code == 403
    assert b"Users and roles" not in client.get("/settings/").content
    client = logged_in(client, admin)
    client.post("/settings/users/", {"username": "newbie", "role": "Operator", "password": "long-enough-1"})
    from django.contrib.auth.models import User

    newbie = User.objects.get(username="newbie")
    assert list(newbie.groups.values_list("name", flat=True)) == ["Operator"]
    client.post(f"/settings/users/{newbie.pk}/role/", {"role": "Viewer"})
    assert list(newbie.groups.values_list("name", flat=True)) == ["Viewer"]
    assert AuditEvent.objects.filter(action="user.role").count() == 2


def test_network_create_form_validates_like_the_api(client, cluster, admin):
    client = logged_in(client, admin)
    response = client.post("/networks/new/", {"name": "n2", "vlan": "5", "cidr": "10.9.0.0/24",
                                              "gateway": "10.8.0.1"})
    assert response.status_code == 400 and "outside" in response.context["form"].errors["gateway"][0]
    client.post("/networks/new/", {"name": "n2", "vlan": "5", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1"})
    assert Network.objects.filter(name="n2").exists()


def test_audit_page_filters(client, vm, viewer):
    client = logged_in(client, viewer)
    assert "vm.create" in client.get("/audit/", {"action": "vm."}).content.decode()
    assert "vm.create" not in client.get("/audit/", {"action": "token."}).content.decode()


def test_vm_list_shows_and_filters_guest_tools_and_guest_ips(client, cluster, viewer):
    from ngt.models import GuestTools

    demo.seed(6)
    linked = VM.objects.get(name="web-00001")
    GuestTools.objects.create(vm=linked, enabled=True, link_active=True, ip_addresses=["192.0.2.7"])
    client = logged_in(client, viewer)
    body = client.get("/vms/", {"guest_tools": "link-active"}).content.decode()
    assert "web-00001" in body and "app-00002" not in body
    assert "link active" in body and "192.0.2.7" in body
    body = client.get("/vms/", {"guest_tools": "not-installed"}).content.decode()
    assert "web-00001" not in body and "app-00002" in body


def test_clone_form_passes_the_customization_on(client, vm, operator, run_tasks):
    client = logged_in(client, operator)
    client.post(f"/vms/{vm.uuid}/clone/", {
        "name": "web-2", "customization_kind": "cloud-init", "customization_source": "content",
        "customization_content": "#cloud-config\nruncmd:\n  - echo hi\n", "customization_datasource": "config-drive"})
    clone = VM.objects.get(name="web-2")
    assert clone.customization.status == "pending"
    run_tasks()
    clone.refresh_from_db()
    assert clone.cdroms.filter(purpose="customization").exclude(iso_path="").exists()


def test_the_task_page_cancels_a_bulk_clone_s_children_not_started(client, vm, operator, viewer):
    from console.core.actors import Actor
    from console.services.bulk_clone import BulkCloneRequest, request_bulk_clone

    parent = request_bulk_clone(Actor.system(), BulkCloneRequest(source=vm, count=3, name_pattern="copy-{n}"))
    logged_in(client, viewer)
    assert "the children not started" not in client.get(f"/tasks/{parent.uuid}/").content.decode()
    assert client.post(f"/tasks/{parent.uuid}/cancel/").status_code == 403
    logged_in(client, operator)
    page = client.get(f"/tasks/{parent.uuid}/").content.decode()
    assert "Cancel the children not started" in page and f"/tasks/{parent.uuid}/cancel/" in page
    answer = client.post(f"/tasks/{parent.uuid}/cancel/", follow=True)
    page = answer.content.decode()
    assert "cancelled: 0 of 3 done, 3 cancelled" in page
    parent.refresh_from_db()
    assert parent.status == "cancelled" and not VM.objects.filter(parent=vm).exists()
    again = client.post(f"/tasks/{parent.uuid}/cancel/", follow=True).content.decode()
    assert "already ended (cancelled)" in again
