"""Console pages: the library (roles, paste, upload, generator), live validation, the Create VM and
Clone forms' customization section, and the VM page's panel."""

import io

import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.urls import resolve

from console.forms.vms import CloneForm, clone_options, with_options
from console.models import VM
from customization import views
from customization.models import CustomizationScript, VMCustomization
from customization.services.lifecycle import CustomizationRequest
from customization.urls import urlpatterns
from tests.customization.conftest import CLOUD_CONFIG, UNATTEND

LIBRARY = "/customization-scripts/"


def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def script(admin):
    return CustomizationScript.objects.create(name="web", content="#cloud-config\npassword: s3cret\n", owner=admin)


def _request(client, user, path):
    """A request for views that console's placeholder page shadows until the lead removes it."""
    request = RequestFactory().get(path)
    request.user = user
    request.session = client.session
    return request


def test_the_library_page_is_ours_under_its_nav_name():
    assert any(p.name == "customization-scripts" and str(p.pattern) == "customization-scripts/" for p in urlpatterns)


def test_viewers_see_the_list_and_metadata_not_content_nor_forms(client, cluster, viewer, script):
    client = logged_in(client, viewer)
    page = views.script_library(_request(client, viewer, LIBRARY))
    assert b"web" in page.content and b"Upload a script" not in page.content
    detail = client.get(f"{LIBRARY}{script.uuid}/")
    assert detail.status_code == 200 and b"s3cret" not in detail.content and b"Operators and Admins" in detail.content
    new = {"name": "x", "kind": "cloud-init", "content": "#!/bin/sh\n"}
    assert client.post(f"{LIBRARY}new/", new).status_code == 403
    assert client.post(f"{LIBRARY}{script.uuid}/delete/").status_code == 403
    assert client.post(f"{LIBRARY}{script.uuid}/", {**new, "name": "web"}).status_code == 403


def test_operators_paste_edit_and_delete(client, cluster, operator, script):
    client = logged_in(client, operator)
    response = client.post(f"{LIBRARY}new/", {"name": "boot", "kind": "cloud-init", "content": CLOUD_CONFIG})
    saved = CustomizationScript.objects.get(name="boot")
    assert response.status_code == 302 and response["Location"] == saved.get_absolute_url()
    detail = client.get(saved.get_absolute_url())
    assert b"nginx" in detail.content and b"cloud-config" in detail.content
    response = client.post(saved.get_absolute_url(), {"name": "boot", "kind": "cloud-init", "description": "d",
                                                      "content": "#cloud-config\nruncmd: 5\n"})
    assert response.status_code == 400 and b"not of type" in response.content
    saved.refresh_from_db()
    assert saved.content == CLOUD_CONFIG
    assert client.post(f"{saved.get_absolute_url()}delete/").status_code == 302
    assert not CustomizationScript.objects.filter(name="boot").exists()


def test_pasting_an_invalid_script_shows_where(client, cluster, operator):
    response = logged_in(client, operator).post(f"{LIBRARY}new/", {"name": "bad", "kind": "cloud-init",
                                                                   "content": "#cloud-config\nruncmd: 5\n"})
    assert response.status_code == 400 and b"line 2, column 9" in response.content
    assert not CustomizationScript.objects.exists()


def test_upload_form_saves_and_refuses_a_huge_file_before_reading_it(client, cluster, operator):
    client = logged_in(client, operator)
    upload = io.BytesIO(CLOUD_CONFIG.encode())
    upload.name = "boot.yaml"
    response = client.post(f"{LIBRARY}upload/", {"name": "up", "kind": "cloud-init", "file": upload})
    assert response.status_code == 302 and CustomizationScript.objects.get(name="up").content == CLOUD_CONFIG

    class Unread:
        def read(self, *args):
            raise AssertionError("the body was read")

        readline = read

    response = client.generic("POST", f"{LIBRARY}upload/", b"", content_type="multipart/form-data; boundary=x",
                              CONTENT_LENGTH=str(100 * 1024 * 1024), **{"wsgi.input": Unread()})
    assert response.status_code == 413 and b"over the limit of 64 KiB" in response.content


def test_upload_of_a_file_just_over_the_limit_stops_reading(client, cluster, operator, settings):
    settings.FACET_CUSTOMIZATION_MAX_BYTES = 20 * 1024  # so that the body is small but the file too big
    upload = io.BytesIO(b"#!/bin/sh\n" + b"#" * (25 * 1024))
    upload.name = "big.sh"
    response = logged_in(client, operator).post(f"{LIBRARY}upload/", {"name": "big", "kind": "cloud-init",
                                                                      "file": upload})
    assert response.status_code == 413 and not CustomizationScript.objects.exists()


def test_upload_without_csrf_token_is_refused(cluster, operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    upload = io.BytesIO(CLOUD_CONFIG.encode())
    upload.name = "boot.yaml"
    assert client.post(f"{LIBRARY}upload/", {"name": "up", "kind": "cloud-init", "file": upload}).status_code == 403


def test_the_sysprep_generator_saves_a_valid_answer_file(client, cluster, operator):
    response = logged_in(client, operator).post(f"{LIBRARY}sysprep/", {
        "name": "win", "install_type": "prepared", "computer_name": "*", "admin_password": "pw", "time_zone": "UTC",
        "locale": "en-US", "first_logon_commands": "cmd /c echo hi"})
    assert response.status_code == 302
    script = CustomizationScript.objects.get(name="win")
    assert script.kind == script.format == "sysprep"
    assert "<ComputerName>*</ComputerName>" in script.content


def test_live_validation_answers_a_fragment(client, cluster, viewer):
    response = logged_in(client, viewer).post("/customization/validate/", {
        "customization_kind": "cloud-init", "customization_content": "#cloud-config\nruncmd: 5\n"})
    assert response.status_code == 200
    assert b"invalid" in response.content and b"<code>2:9</code>" in response.content
    assert b"Type or paste" in client.post("/customization/validate/", {"customization_content": ""}).content


def test_create_form_with_customization(client, cluster, operator, run_tasks):
    client = logged_in(client, operator)
    page = client.get("/vms/new/")
    assert b'name="customization_content"' in page.content and b'hx-post="/customization/validate/"' in page.content
    assert b'data-limit="65536"' in page.content
    form = {"name": "web-1", "vcpus": 1, "memory_gib": 1, "guest_os": "linux", "disks-TOTAL_FORMS": 3,
            "disks-INITIAL_FORMS": 0, "nics-TOTAL_FORMS": 2, "nics-INITIAL_FORMS": 0,
            "customization_kind": "cloud-init", "customization_source": "content",
            "customization_content": "#cloud-config\nruncmd: 5\n", "customization_datasource": "nocloud",
            "customization_key_values": "role=web\n"}
    response = client.post("/vms/new/", form)
    assert response.status_code == 400 and b"line 2, column 9" in response.content
    assert not VM.objects.exists()
    response = client.post("/vms/new/", {**form, "customization_key_values": "no equals"})
    assert response.status_code == 400 and b"write key=value" in response.content
    response = client.post("/vms/new/", {**form, "customization_content": CLOUD_CONFIG})
    assert response.status_code == 302
    run_tasks()
    customization = VMCustomization.objects.get()
    assert (customization.datasource, customization.key_values) == ("nocloud", {"role": "web"})


def test_create_form_asks_for_a_hostname(client, cluster, operator):
    response = logged_in(client, operator).post("/vms/new/", {
        "name": "web_1", "vcpus": 1, "memory_gib": 1, "guest_os": "linux", "disks-TOTAL_FORMS": 3,
        "disks-INITIAL_FORMS": 0, "nics-TOTAL_FORMS": 2, "nics-INITIAL_FORMS": 0,
        "customization_kind": "cloud-init", "customization_source": "content", "customization_content": CLOUD_CONFIG})
    assert response.status_code == 400
    assert b"is not a valid hostname: give the VM a hostname" in response.content


def test_clone_form_has_the_section_and_gives_request_clone_its_options(client, cluster, operator, create_vm,
                                                                         script):
    source = create_vm()
    page = logged_in(client, operator).get(f"/vms/{source.uuid}/clone/")
    assert b'name="customization_script"' in page.content and b'name="hostname"' in page.content
    form = with_options(CloneForm)({"name": "c1", "hostname": "c1", "customization_kind": "cloud-init",
                                    "customization_source": "script", "customization_script": script.pk})
    assert form.is_valid(), form.errors
    options = clone_options(form)
    assert options["hostname"] == "c1" and options["options"]["customization"] == CustomizationRequest(
        kind="cloud-init", script=script, datasource="", key_values={})


def test_vm_panel_shows_status_files_and_the_guests_result(client, cluster, viewer, create_vm):
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG))
    VMCustomization.objects.filter(vm=vm).update(status="failed", message="runcmd exited 2")
    panel = logged_in(client, viewer).get(f"/vms/{vm.uuid}/customization/panel/")
    assert panel.status_code == 200
    text = panel.content.decode()
    assert text.lstrip().startswith('<section class="card" id="customization-panel">')
    assert "Failed" in text and "runcmd exited 2" in text and "openstack/latest/user_data" in text
    plain = create_vm(name="plain")
    assert b"Created without customization" in client.get(f"/vms/{plain.uuid}/customization/panel/").content
    assert resolve(f"/vms/{vm.uuid}/customization/panel/").url_name == "customization-panel"


def test_vm_panel_masks_key_values_below_operator(client, cluster, viewer, operator, create_vm):
    vm = create_vm(CustomizationRequest(content=UNATTEND.replace("{{ org }}", "{{ admin_password }}"),
                                        key_values={"admin_password": "Adm1n-Passw0rd!"}), guest_os="windows")
    path = f"/vms/{vm.uuid}/customization/panel/"
    as_viewer = logged_in(client, viewer).get(path).content.decode()
    assert "admin_password" in as_viewer and "********" in as_viewer and "Adm1n-Passw0rd!" not in as_viewer
    assert "Adm1n-Passw0rd!" in logged_in(Client(), operator).get(path).content.decode()


def test_the_list_cell_shows_the_status_or_a_dash(cluster, create_vm):
    vm = create_vm(CustomizationRequest(content=CLOUD_CONFIG))
    plain = create_vm(name="plain")
    cell = Template('{% include "customization/list_cell.html" %}')
    listed = {v.name: v for v in VM.objects.select_related("customization")}
    assert "Media attached" in cell.render(Context({"vm": listed[vm.name]}))
    assert "—" in cell.render(Context({"vm": listed[plain.name]}))
