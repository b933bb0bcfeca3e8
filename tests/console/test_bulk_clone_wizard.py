"""The bulk clone wizard's pages: each step checked by the service's plan with its error beside its field (a
taken name, a count out of range, no capacity, a bad CSV row at its line and column, a running source for
linked clones), the previews, the review's totals and plan, the submit, the entry points, and Operators
only. Nothing is made before the submit."""

import io
import re

import pytest

from console.core.models import AuditEvent, Task
from console.models import VM, Host, Network, Nic
from console.services import templates, vms
from ngt.models import GuestTools
from ngt.services import guest_tools as guest_tools
from tests.conftest import make_user

GiB, MiB = 1024**3, 1024**2
CLOUD_CONFIG = "## template: jinja\n#cloud-config\nruncmd:\n  - echo {{ ds.meta_data.meta.role }}\n"
STEP_KEYS = ["source", "names", "placement", "option-customization", "option-guest_tools", "power", "review"]


@pytest.fixture
def gold(cluster, actor, run_tasks):
    """A template of 4 GiB (4 fit on each 16 GiB host) with a disk and a NIC with a static address."""
    Network.objects.filter(name="lan").update(pool_end="10.0.0.200")
    lan = Network.objects.get(name="lan")
    vms.request_create_vm(actor, vms.VMSpec(name="gold", vcpus=2, memory_bytes=4 * GiB, disk_sizes=[2 * MiB],
                                            nics=[vms.NicSpec(network=lan, ip="auto")]))
    run_tasks()
    source = VM.objects.get(name="gold")
    templates.request_make_template(actor, source)
    run_tasks()
    source.refresh_from_db()
    assert source.is_template
    return source


@pytest.fixture
def oscar(client, operator):
    client.force_login(operator)
    return client


def made() -> tuple[int, int, int, int]:
    return VM.objects.count(), Nic.objects.count(), Task.objects.count(), AuditEvent.objects.count()


def data(vm: VM, **overrides) -> dict:
    """Every field of the wizard, as the pages carry them (the defaults of each step)."""
    values = {"source": str(vm.uuid), "count": "3", "name_pattern": "web-{n:03}", "start_index": "1",
              "placement": "spread", "host": "", "per_clone_csv": "", "linked": "full",
              "customization_kind": "", "customization_source": "content", "customization_content": "",
              "customization_key_values": "", "customization_datasource": "config-drive", "guest_tools_mount": ""}
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def post(client, step: str, values: dict, go: str = "next", files: dict | None = None):
    return client.post("/vms/bulk-clone/", {**values, "step": step, "go": go, **(files or {})})


def shown_step(response) -> str:
    return response.context["step"].key


def field_error(response, field: str) -> str:
    return " ".join(response.context["form"].errors.get(field, []))


def preview(client, step: str, values: dict) -> str:
    response = client.post("/vms/bulk-clone/preview/", {**values, "step": step})
    assert response.status_code == 200
    return re.sub(r"\s+", " ", response.content.decode())


# --- entry points and roles ------------------------------------------------------------------------------
def test_operators_get_deploy_vms_on_templates_and_clone_many_on_vms(client, gold, operator, actor, run_tasks):
    vms.request_create_vm(actor, vms.VMSpec(name="app", vcpus=1, memory_bytes=GiB))
    run_tasks()
    app = VM.objects.get(name="app")
    client.force_login(operator)
    template_page = client.get(f"/vms/{gold.uuid}/").content.decode()
    assert f'href="/vms/bulk-clone/?source={gold.uuid}">Deploy VMs</a>' in template_page
    assert f"/vms/{gold.uuid}/clone/" not in template_page  # "Deploy VMs" replaces Clone on a template
    assert 'href="/vms/bulk-clone/">Deploy VMs</a>' in client.get("/templates/").content.decode()
    vm_page = client.get(f"/vms/{app.uuid}/").content.decode()
    assert f'href="/vms/bulk-clone/?source={app.uuid}">Clone many</a>' in vm_page
    assert f"/vms/{app.uuid}/clone/" in vm_page  # the single clone stays on a VM
    assert "Deploy VMs" not in client.get("/vms/").content.decode()


def test_viewers_see_no_entry_point_and_get_403(client, gold, viewer):
    client.force_login(viewer)
    assert "bulk-clone" not in client.get(f"/vms/{gold.uuid}/").content.decode()
    assert "bulk-clone" not in client.get("/templates/").content.decode()
    assert client.get(f"/vms/bulk-clone/?source={gold.uuid}").status_code == 403
    assert post(client, "names", data(gold)).status_code == 403
    assert client.post("/vms/bulk-clone/preview/", {**data(gold), "step": "names"}).status_code == 403
    assert client.get("/vms/bulk-clone/sources/").status_code == 403
    assert made()[0] == 1


def test_the_template_panel_no_longer_says_to_mark_it_as_a_template(client, gold, operator):
    client.force_login(operator)
    panel = client.get(f"/vms/{gold.uuid}/guest-tools/panel/")
    assert panel.status_code == 200
    assert "marking it as a template" not in panel.content.decode()
    assert "A template never runs" in panel.content.decode()


# --- the steps -------------------------------------------------------------------------------------------
def test_the_steps_in_order_and_back_keeps_the_values(oscar, gold):
    response = oscar.get(f"/vms/bulk-clone/?source={gold.uuid}")
    assert response.status_code == 200 and shown_step(response) == "names"  # the source is given
    assert [step.key for step in response.context["steps"]] == STEP_KEYS
    body = response.content.decode()
    assert "<h1>Deploy VMs</h1>" in body and 'value="gold-{n:03}"' in body
    values = data(gold, count="5", name_pattern="db-{n:02}", start_index="7")
    seen = []
    for key in STEP_KEYS[1:-1]:
        response = post(oscar, key, values)
        assert response.status_code == 200, response.context["form"].errors
        seen.append(shown_step(response))
    assert seen == STEP_KEYS[2:]
    back = post(oscar, "review", values, go="back:names")
    assert shown_step(back) == "names"
    body = back.content.decode()
    assert 'value="5"' in body and 'value="db-{n:02}"' in body and 'value="7"' in body
    # The other steps ride along as hidden inputs.
    assert '<input type="hidden" name="linked" value="full"' in body
    assert made()[0] == 1  # nothing made on the way


def test_the_source_step_needs_a_source_and_the_picker_lists_templates_first(oscar, gold, actor, run_tasks):
    vms.request_create_vm(actor, vms.VMSpec(name="alpha", vcpus=1, memory_bytes=GiB))
    run_tasks()
    start = oscar.get("/vms/bulk-clone/")
    assert shown_step(start) == "source" and "<h1>Deploy VMs</h1>" in start.content.decode()
    response = post(oscar, "source", data(gold, source=""))
    assert response.status_code == 400 and shown_step(response) == "source"
    assert "Choose the template or VM to clone." in response.content.decode()
    assert shown_step(post(oscar, "source", data(gold))) == "names"
    picker = oscar.get("/vms/bulk-clone/sources/").content.decode()
    assert picker.index("gold") < picker.index("alpha")  # templates first
    assert "template" in picker and "VM, off" in picker
    assert "gold" not in oscar.get("/vms/bulk-clone/sources/", {"q": "alp"}).content.decode()


def test_the_names_preview_shows_the_first_and_last_names_and_a_taken_one(oscar, gold, actor, run_tasks):
    text = preview(oscar, "names", data(gold, count="20", start_index="0"))
    assert "<strong>20</strong> VMs: <code>web-000</code> … <code>web-019</code>" in text
    assert "names free" in text  # though 20 of 4 GiB fit on no placement: that is the next step's to say
    vms.request_create_vm(actor, vms.VMSpec(name="web-012", vcpus=1, memory_bytes=GiB))
    run_tasks()
    text = preview(oscar, "names", data(gold, count="20", start_index="0"))
    assert "gives &#x27;web-012&#x27; for n=12, and a VM of that name exists" in text
    assert "choose another pattern or start index" in text
    assert "<code>web-000</code> … <code>web-019</code>" in text and "names free" not in text
    before = made()
    response = post(oscar, "names", data(gold, count="20", start_index="0"))
    assert response.status_code == 400 and shown_step(response) == "names"
    assert "web-012" in field_error(response, "name_pattern")
    assert made() == before


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"count": "0"}, "count", "give 1 to 1000 clones"),
    ({"count": "1001"}, "count", "give 1 to 1000 clones"),
    ({"count": "many"}, "count", "Enter a whole number."),
    ({"name_pattern": "web"}, "name_pattern", "has no {n}"),
    ({"name_pattern": "web {n}"}, "name_pattern", "gives 'web 1' for n=1"),
    ({"start_index": "-1"}, "start_index", "give a whole number from 0"),
])
def test_a_bad_count_or_pattern_is_shown_beside_its_field(oscar, gold, values, field, message):
    response = post(oscar, "names", data(gold, **values))
    assert response.status_code == 400 and shown_step(response) == "names"
    assert message in field_error(response, field)
    assert f'id="id_{field}-error"' in response.content.decode()


def test_placement_without_capacity_for_the_whole_plan(oscar, gold):
    # 9 VMs of 4 GiB: the names step passes (its part of the plan holds), the placement says the room.
    values = data(gold, count="9")
    assert shown_step(post(oscar, "names", values)) == "placement"
    response = post(oscar, "placement", values)
    assert response.status_code == 400 and shown_step(response) == "placement"
    assert "the enabled hosts have room for 8 clones of 4 GiB" in field_error(response, "placement")
    host = Host.objects.get(name="host-1")
    one_host = data(gold, count="5", placement="host", host=str(host.uuid))
    response = post(oscar, "placement", one_host)
    assert "host host-1 has 16 GiB of memory free; its share, 5 clones of 4 GiB" in field_error(response, "placement")
    response = post(oscar, "placement", data(gold, placement="host"))
    assert "Choose the host" in field_error(response, "host")
    text = preview(oscar, "placement", data(gold, count="4"))
    assert re.search(r"<td>host-1</td><td class=\"num\">8</td><td class=\"num\">16 GiB</td><td class=\"num\">2</td>",
                     text), text


def test_a_bad_csv_row_is_shown_at_its_line_and_column_then_fixed(oscar, gold):
    table = "name,hostname,ip,role\nweb-a,alpha,10.0.0.150,db\nweb-b,beta,10.0.0.999,web\n,,,cache\n"
    values = data(gold, customization_kind="cloud-init", customization_content=CLOUD_CONFIG, per_clone_csv=table)
    before = made()
    response = post(oscar, "option-customization", values)
    assert response.status_code == 400 and shown_step(response) == "option-customization"
    assert "line 3, column 3 (ip): '10.0.0.999' is not an IP address" in field_error(response, "per_clone_csv")
    body = response.content.decode()
    assert '<li value="3" class="bad"><code>web-b,beta,10.0.0.999,web</code>' in body
    assert 'id="id_per_clone_csv-error"' in body
    assert "line 3, column 3 (ip)" in preview(oscar, "option-customization", values)  # live, as typed
    fixed = {**values, "per_clone_csv": table.replace("10.0.0.999", "10.0.0.151")}
    text = preview(oscar, "option-customization", fixed)
    assert "The table gives 3 rows for 3 VMs, with the key-values role." in text
    assert "Customization: <strong>on</strong>" in text
    assert shown_step(post(oscar, "option-customization", fixed)) == "option-guest_tools"
    assert made() == before


@pytest.mark.parametrize(("table", "message"), [
    ("name,hostname,ip,colour\n,,,red\n,,,blue\n,,,green\n", "line 1, column 4 (colour): unknown column"),
    ("name\na\nb\n", "2 data rows for 3 clones"),
    ("name,ip\na,10.0.0.150\nb,10.0.0.150\nc,\n", "line 3, column 2 (ip): 10.0.0.150 is also the address of clone 1"),
    ("name,ip\na,10.0.0.50\nb,\nc,\n", "line 2, column 2 (ip): 10.0.0.50 is outside the static-IP pool"),
    ("name\ngold\nb\nc\n", "line 2, column 1 (name): a VM named 'gold' already exists"),
])
def test_bad_tables_are_refused_at_their_line(oscar, gold, table, message):
    values = data(gold, customization_kind="cloud-init", customization_content=CLOUD_CONFIG, per_clone_csv=table)
    response = post(oscar, "option-customization", values)
    assert response.status_code == 400 and shown_step(response) == "option-customization"
    assert message in field_error(response, "per_clone_csv")


def test_an_uploaded_csv_becomes_the_table(oscar, gold):
    upload = io.BytesIO(b"name,hostname\nweb-x,x1\n,\n,\n")
    upload.name = "clones.csv"
    response = post(oscar, "option-customization", data(gold), files={"per_clone_file": upload})
    assert shown_step(response) == "option-guest_tools"
    assert "web-x,x1" in response.content.decode()  # carried on as the pasted table
    bad = io.BytesIO(b"\xff\xfe\x00bad")
    bad.name = "clones.csv"
    response = post(oscar, "option-customization", data(gold), files={"per_clone_file": bad})
    assert response.status_code == 400 and "not UTF-8" in field_error(response, "per_clone_file")


def test_guest_tools_are_on_by_default_when_the_source_has_them(oscar, gold, actor, run_tasks):
    text = preview(oscar, "option-guest_tools", data(gold))
    assert "Guest Tools: <strong>none</strong>" in text
    asked = data(gold, guest_tools_mount="yes")
    assert "Guest Tools: <strong>on</strong>" in preview(oscar, "option-guest_tools", asked)
    guest_tools.request_enable(actor, gold)
    run_tasks()
    assert "Guest Tools: <strong>on</strong>" in preview(oscar, "option-guest_tools", data(gold))
    review = post(oscar, "power", data(gold))
    assert [label for label, on in review.context["options"] if on] == ["Guest Tools"]
    off = post(oscar, "power", data(gold, guest_tools_mount="no"))
    assert [label for label, on in off.context["options"] if on] == []
    # The capabilities chosen ride along to the review, and the clones get them.
    values = data(gold, guest_tools_capabilities=["vss-snapshot"])
    power = post(oscar, "option-guest_tools", values)
    assert shown_step(power) == "power"
    assert '<input type="hidden" name="guest_tools_capabilities" value="vss-snapshot"' in power.content.decode()
    post(oscar, "review", values, go="submit")
    run_tasks()
    assert {tuple(state.capabilities) for state in GuestTools.objects.filter(vm__parent=gold)} == {("vss-snapshot",)}


def test_linked_clones_of_a_running_vm_are_refused_at_their_step(oscar, cluster, actor, run_tasks):
    vms.request_create_vm(actor, vms.VMSpec(name="live", vcpus=1, memory_bytes=GiB, power_on=True))
    run_tasks()
    live = VM.objects.get(name="live")
    assert live.power_state == "on"
    response = post(oscar, "power", data(live, linked="linked"))
    assert response.status_code == 400 and shown_step(response) == "power"
    assert "power it off first, or make full clones" in field_error(response, "linked")
    assert "<h1>Clone live many times</h1>" in response.content.decode()


def test_the_review_shows_the_totals_and_the_plan_and_submit_makes_it(oscar, gold):
    table = "name,hostname,ip,role\nweb-a,alpha,10.0.0.150,db\n,,,web\n,,,web\n"
    values = data(gold, customization_kind="cloud-init", customization_content=CLOUD_CONFIG, per_clone_csv=table,
                  power_on="on")
    before = made()
    review = post(oscar, "power", values)
    assert shown_step(review) == "review" and made() == before
    assert review.context["totals"] == {"vms": 3, "vcpus": 6, "memory_bytes": 12 * GiB, "disk_bytes": 6 * MiB,
                                        "ips": 3}
    body = re.sub(r"\s+", " ", review.content.decode())
    for shown in ('<span class="big">3</span> VMs', '<span class="big">6</span> vCPUs',
                  '<span class="big">12 GiB</span> memory', '<span class="big">6 MiB</span> disk',
                  '<span class="big">3</span> IP addresses taken', "host-1: 2 VMs, host-2: 1 VM",
                  "<td>web-a</td><td>alpha</td><td>host-1</td> <td>10.0.0.150</td> <td>db</td>",
                  "<td>web-002</td><td>web-002</td>", "Powered on once cloned", "Deploy 3 VMs</button>"):
        assert shown in body, shown
    response = post(oscar, "review", values, go="submit")
    parent = Task.objects.get(kind="vm.bulk-clone")
    assert response.status_code == 302 and response["Location"] == f"/tasks/{parent.uuid}/"
    assert parent.children.count() == 3 and parent.params["power_on"] is True
    assert sorted(VM.objects.filter(parent=gold).values_list("name", flat=True)) == ["web-002", "web-003", "web-a"]
    page = oscar.get(response["Location"]).content.decode()
    assert "Task started: Bulk Clone gold" in page and "Bulk Clone" in page and "Children" in page
    assert "Cancel the children not started" in page
    assert "vm.bulk-clone" not in page and "Bulk Clone" in oscar.get("/tasks/").content.decode()


def test_a_name_taken_between_the_review_and_the_submit_goes_back_to_its_step(oscar, gold, actor, run_tasks):
    values = data(gold)
    assert shown_step(post(oscar, "power", values)) == "review"
    vms.request_create_vm(actor, vms.VMSpec(name="web-002", vcpus=1, memory_bytes=GiB))
    run_tasks()
    before = made()
    response = post(oscar, "review", values, go="submit")
    assert response.status_code == 400 and shown_step(response) == "names"
    assert "web-002" in field_error(response, "name_pattern")
    assert made() == before


def test_an_operator_without_the_source_role_sees_it_all_at_the_source_step(client, gold):
    """A source deleted meanwhile: the source step says so (no 500)."""
    client.force_login(make_user("olga", "Operator"))
    values = data(gold)
    VM.objects.filter(pk=gold.pk).update(power_state="deleting")
    response = post(client, "names", values)
    assert response.status_code == 400 and shown_step(response) == "source"
    assert "is deleting" in field_error(response, "source")
