"""The REST contract: the script library by role, validation, the customization object of VM create and
clone, and a VM's customization status."""

import base64
import gzip
import json

import pytest

from console.core.models import Task
from console.models import VM, Network
from customization.models import CustomizationScript, VMCustomization
from customization.services import lifecycle
from tests.conftest import client_for
from tests.customization.conftest import CLOUD_CONFIG, UNATTEND

SCRIPTS = "/api/v1/customization-scripts/"
GiB = 1024**3


@pytest.fixture
def script(admin):
    return CustomizationScript.objects.create(name="web", content="#cloud-config\npassword: s3cret\n", owner=admin)


def test_viewers_see_metadata_but_never_content(cluster, viewer, script):
    client = client_for(viewer)
    listed = client.get(SCRIPTS).json()["results"][0]
    assert listed["name"] == "web" and "content" not in listed
    detail = client.get(f"{SCRIPTS}{script.uuid}/").json()
    assert detail["owner"] == "alice" and "content" not in detail
    assert "s3cret" not in client.get(f"{SCRIPTS}{script.uuid}/").content.decode()
    assert client.post(SCRIPTS, {"name": "x", "content": "#!/bin/sh\n"}, format="json").status_code == 403
    assert client.delete(f"{SCRIPTS}{script.uuid}/").status_code == 403


def test_operators_create_read_update_and_delete(cluster, operator, script):
    client = client_for(operator)
    created = client.post(SCRIPTS, {"name": "boot", "kind": "cloud-init", "content": CLOUD_CONFIG,
                                    "description": "nginx"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["format"], body["content"], body["owner"], body["usage_count"]) == (
        "cloud-config", CLOUD_CONFIG, "oscar", 0)
    assert client.get(f"{SCRIPTS}{script.uuid}/").json()["content"].startswith("#cloud-config")
    assert [s["name"] for s in client.get(f"{SCRIPTS}?name=boot").json()["results"]] == ["boot"]
    changed = client.patch(f"{SCRIPTS}{body['uuid']}/", {"content": "#!/bin/sh\necho\n"}, format="json")
    assert changed.status_code == 200 and changed.json()["format"] == "shell-script"
    assert changed.json()["description"] == "nginx"
    assert client.delete(f"{SCRIPTS}{body['uuid']}/").status_code == 204
    assert not CustomizationScript.objects.filter(name="boot").exists()


def test_an_invalid_script_is_not_saved(cluster, operator):
    response = client_for(operator).post(SCRIPTS, {"name": "bad", "content": "#cloud-config\nruncmd: 5\n"},
                                         format="json")
    assert response.status_code == 400
    assert response.json() == {"content": ["line 2, column 9: runcmd: 5 is not of type 'array'"]}
    assert not CustomizationScript.objects.exists()


def test_validate_answers_format_validity_and_problems_for_every_role(cluster, viewer):
    client = client_for(viewer)
    response = client.post(f"{SCRIPTS}validate/", {"kind": "cloud-init",
                                                               "content": "#cloud-config\nruncmd: 5\nx: 1\n"},
                                       format="json")
    assert response.status_code == 200
    assert response.json() == {"format": "cloud-config", "valid": False, "problems": [
        {"line": 2, "column": 9, "severity": "error", "message": "runcmd: 5 is not of type 'array'"},
        {"line": 3, "column": 1, "severity": "warning", "message": "unknown key 'x': no cloud-init module reads it"}]}
    packed = base64.b64encode(gzip.compress(UNATTEND.encode())).decode()
    response = client.post(f"{SCRIPTS}validate/", {"kind": "sysprep", "content_base64": packed},
                                       format="json")
    assert response.json() == {"format": "sysprep", "valid": True, "problems": [
        {"line": 6, "column": 31, "severity": "info", "message": "{{ org }} is filled from the VM's key-values"}]}
    assert client.post(f"{SCRIPTS}validate/", {"content_base64": "!!"}, format="json").json() == {
        "content_base64": ["not valid base64"]}


def test_upload_saves_a_file_and_refuses_a_huge_one_before_reading_it(cluster, operator):
    client = client_for(operator)
    response = client.post(f"{SCRIPTS}upload/?name=gz&kind=cloud-init", data=gzip.compress(CLOUD_CONFIG.encode()),
                           content_type="application/octet-stream")
    assert response.status_code == 201, response.content
    assert CustomizationScript.objects.get(name="gz").content == CLOUD_CONFIG

    class Unread:
        """A 100 MB body that fails the test if anyone reads it."""

        def read(self, *args):
            raise AssertionError("the body was read")

        readline = read

    response = client.generic("POST", f"{SCRIPTS}upload/?name=huge", data=b"", content_type="application/octet-stream",
                              CONTENT_LENGTH=str(100 * 1024 * 1024), **{"wsgi.input": Unread()})
    assert response.status_code == 413
    assert "over the limit of 64 KiB" in response.json()["file"][0]
    response = client.generic("POST", SCRIPTS, data=b"", content_type="application/json",
                              CONTENT_LENGTH=str(100 * 1024 * 1024), **{"wsgi.input": Unread()})
    assert response.status_code == 413
    assert not CustomizationScript.objects.filter(name="huge").exists()


def test_upload_refuses_binary_and_non_utf8(cluster, operator):
    client = client_for(operator)
    for body, message in [(b"\x00\x01\x02", "binary"), (b"#cloud-config\nname: caf\xe9\n", "not UTF-8")]:
        response = client.post(f"{SCRIPTS}upload/?name=bin", data=body, content_type="application/octet-stream")
        assert response.status_code == 400 and message in response.json()["content"][0]
    assert not CustomizationScript.objects.exists()


def test_create_vm_with_customization_and_read_its_status(cluster, api, run_tasks, script):
    lan = Network.objects.get(name="lan")
    response = api.post("/api/v1/vms/", {
        "name": "web-1", "vcpus": 1, "memory_bytes": GiB, "disks": [{"size_bytes": GiB}],
        "nics": [{"network": str(lan.uuid), "ip": "auto"}],
        "customization": {"script": str(script.uuid), "key_values": {"role": "web"}, "datasource": "nocloud"}},
        format="json")
    assert response.status_code == 202, response.json()
    run_tasks()
    vm = VM.objects.get(name="web-1")
    status = api.get(f"/api/v1/vms/{vm.uuid}/customization/").json()
    assert status["status"] == "media-attached" and status["datasource"] == "nocloud"
    assert status["script"] == str(script.uuid) and status["key_values"] == {"role": "web"}
    assert [f["path"] for f in status["media_files"]] == ["meta-data", "network-config", "user-data"]
    assert api.get(f"/api/v1/vms/{vm.uuid}/").json()["cdroms"][status["cdrom_slot"]]["purpose"] == "customization"


def test_clone_with_customization(cluster, api, run_tasks):
    api.post("/api/v1/vms/", {"name": "base", "vcpus": 1, "memory_bytes": GiB}, format="json")
    run_tasks()
    source = VM.objects.get(name="base")
    response = api.post(f"/api/v1/vms/{source.uuid}/clone/", {
        "name": "clone_1", "hostname": "clone-1", "customization": {"content": CLOUD_CONFIG}}, format="json")
    assert response.status_code == 202, response.json()
    run_tasks()
    clone = VM.objects.get(name="clone_1")
    assert clone.hostname == "clone-1" and clone.customization.status == "media-attached"


@pytest.mark.parametrize(("customization", "key", "message"), [
    ({"content": "#cloud-config\nruncmd: [\n"}, "customization.content", "YAML"),
    ({"content": "#!/bin/sh\n", "storage_path": "facet://default/x"}, "customization", "exactly one"),
    ({"storage_path": "facet://default/../../etc/passwd"}, "customization.storage_path", "'..'"),
    ({"content": "#!/bin/sh\n", "datasource": "floppy"}, "customization", "valid choice"),
    ({"content_base64": base64.b64encode(b"\xff\xfe").decode()}, "customization.content", "not UTF-8"),
])
def test_bad_customization_answers_400_and_creates_nothing(cluster, api, customization, key, message):
    response = api.post("/api/v1/vms/", {"name": "web-1", "vcpus": 1, "memory_bytes": GiB,
                                         "customization": customization}, format="json")
    assert response.status_code == 400
    assert message in str(response.json().get(key, response.json()))
    assert not VM.objects.exists() and not Task.objects.exists() and not VMCustomization.objects.exists()


def test_no_valid_hostname_and_none_given_is_a_clear_error(cluster, api):
    response = api.post("/api/v1/vms/", {"name": "web_1", "vcpus": 1, "memory_bytes": GiB,
                                         "customization": {"content": CLOUD_CONFIG}}, format="json")
    assert response.status_code == 400
    assert response.json() == {"hostname": [
        "'web_1' is not a valid hostname: give the VM a hostname for its customization"]}


def test_status_of_a_vm_without_customization_is_404(cluster, api, run_tasks, viewer):
    api.post("/api/v1/vms/", {"name": "plain", "vcpus": 1, "memory_bytes": GiB}, format="json")
    run_tasks()
    vm = VM.objects.get(name="plain")
    response = client_for(viewer).get(f"/api/v1/vms/{vm.uuid}/customization/")
    assert response.status_code == 404 and "without customization" in response.json()["detail"]


SYSPREP_SECRET = "Adm1n-Passw0rd!"


@pytest.fixture
def windows_vm(cluster, api, run_tasks) -> VM:
    """A Windows VM whose answer file takes an administrator's password from its key-values."""
    answer = UNATTEND.replace("{{ org }}", "{{ admin_password }}")
    created = api.post("/api/v1/vms/", {
        "name": "win-1", "vcpus": 1, "memory_bytes": GiB, "guest_os": "windows",
        "customization": {"content": answer, "key_values": {"admin_password": SYSPREP_SECRET}}}, format="json")
    assert created.status_code == 202, created.json()
    run_tasks()
    return VM.objects.get(name="win-1")


def test_sysprep_key_values_are_masked_below_operator(windows_vm, viewer, operator):
    path = f"/api/v1/vms/{windows_vm.uuid}/customization/"
    seen = client_for(viewer).get(path)
    assert seen.status_code == 200
    assert seen.json()["key_values"] == {"admin_password": "********"}
    assert SYSPREP_SECRET not in seen.content.decode()
    assert client_for(operator).get(path).json()["key_values"] == {"admin_password": SYSPREP_SECRET}


def test_phone_home_url_is_one_time_and_needs_no_login(cluster, api, run_tasks, client, settings):
    settings.PUBLIC_URL = "http://10.0.0.1:8000"
    api.post("/api/v1/vms/", {"name": "web-1", "vcpus": 1, "memory_bytes": GiB, "power_on": True,
                              "customization": {"content": CLOUD_CONFIG}}, format="json")
    run_tasks()
    customization = VMCustomization.objects.get()
    token = "wrong"
    assert client.post(f"/customization/phone-home/{token}/", {"instance_id": "x"}).status_code == 404
    token = customization.new_report_token()
    customization.save()
    other = client.post(f"/customization/phone-home/{token}/", {"instance_id": "someone-else"})
    assert other.status_code == 404 and VMCustomization.objects.get().status == "running"
    response = client.post(f"/customization/phone-home/{token}/", {"instance_id": str(customization.vm.uuid),
                                                                    "hostname": "web-1", "pub_key_rsa": "ssh-rsa"})
    assert response.status_code == 200 and response.json() == {"status": "succeeded"}
    assert client.post(f"/customization/phone-home/{token}/", {}).status_code == 404
    run_tasks()
    assert VMCustomization.objects.get().iso_path == ""
    assert lifecycle.phone_home_base() == "http://10.0.0.1:8000"


def test_generate_sysprep_answers_an_answer_file_that_validates(cluster, viewer):
    client = client_for(viewer)
    response = client.post(f"{SCRIPTS}generate-sysprep/", {"install_type": "fresh", "admin_password": "pw",
                                                            "first_logon_commands": ["cmd /c echo 1"]},
                            format="json")
    assert response.status_code == 200
    content = response.json()["content"]
    assert "<ComputerName>*</ComputerName>" in content and 'pass="windowsPE"' in content
    assert client.post(f"{SCRIPTS}validate/", {"kind": "sysprep", "content": content},
                       format="json").json()["valid"]


def test_a_template_gets_no_customization(cluster, api):
    response = api.post("/api/v1/vms/", {"name": "tpl", "vcpus": 1, "memory_bytes": GiB, "is_template": True,
                                         "customization": {"content": CLOUD_CONFIG}}, format="json")
    assert response.status_code == 400 and "never boots" in response.json()["customization"][0]


@pytest.mark.parametrize("payload", [
    {"customization": "#cloud-config"},
    {"customization": {"content": "#!/bin/sh\n", "key_values": ["a=b"]}},
    {"customization": {"content": "#!/bin/sh\n", "key_values": {"a": {"b": 1}}}},
    {"customization": {"content": "#cloud-config\nhostname: \ud800\n"}},
    {"customization": {"content": "#cloud-config\nhostname: é\x01\n"}},
    {"customization": {"script": 5}},
    {"customization": {"storage_path": "facet://default/\u0000"}},
])
def test_garbage_in_the_customization_object_is_a_400_never_a_500(cluster, api, payload):
    body = json.dumps({"name": "web-1", "vcpus": 1, "memory_bytes": GiB, **payload})  # "\ud800" stays escaped
    response = api.post("/api/v1/vms/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert not VM.objects.exists()


def test_validate_places_control_characters_after_non_ascii_text(cluster, viewer):
    response = client_for(viewer).post(f"{SCRIPTS}validate/", {"content": "#cloud-config\na: éé\x01\n"},
                                       format="json")
    assert response.json()["problems"][0]["line"] == 2 and response.json()["problems"][0]["column"] == 6
