"""The API's answers fit its OpenAPI schema, errors included: what the schema fuzzer (test_api_fuzz.py) found, each
shown here in-process through the WSGI application and schemathesis's own response checks (status code
documented, content type, body valid against the schema)."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from console.core import access
from console.core.actors import Actor
from console.core.models import Task
from console.models import CdRom, Cluster
from containers.models import DockerHost, VolumeGroup, VolumeGroupAttachment
from customization.models import CustomizationScript

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
application = get_wsgi_application()


@pytest.fixture
def call(api, admin):
    """Call an operation of the schema as the Admin and check the answer against it; answers the response. (As
    Django's test client does, requests leave the test's database connection, and its transaction, open.)"""
    schema = schemathesis.openapi.from_dict(api.get("/api/schema/?format=json").json())  # before: the test
    request_started.disconnect(close_old_connections)  # client connects these again after its requests
    request_finished.disconnect(close_old_connections)
    key = access.create_token(Actor(user=admin), admin, "schema")[1]

    def call(method: str, path: str, *, uuid=None, query=None, body=None, media_type="application/json"):
        parts = {"path_parameters": {"uuid": str(uuid)} if uuid else None, "query": query}
        if body is not None:
            parts.update(body=body, media_type=media_type)
        case = schema[path][method].Case(**parts)
        return case.call_and_validate(app=application, headers={"Authorization": f"Token {key}"}, checks=CHECKS)

    yield call
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_records_without_their_optional_links_fit_the_schema(call, vm, cluster):
    """A task nobody asked for (the demo seed's) without a parent; a VM without a host, with an empty CD-ROM; Guest
    Tools without a certificate; a script whose owner was deleted; a Docker host outside Facet (no VM); a volume
    group made in the console (no Docker host made it)."""
    vm.host = None
    vm.save()
    CdRom.objects.create(vm=vm, slot=3)
    task = Task.objects.create(kind="vm.create", entity_type="vm", entity_uuid=vm.uuid, entity_name=vm.name)
    CustomizationScript.objects.create(name="orphan", content="#cloud-config\n{}\n", owner=None)
    DockerHost.objects.create(cluster=cluster, name="outside", kind="external", key_hash="0" * 64, key_hint="x")
    VolumeGroup.objects.create(cluster=cluster, name="data", storage_container=cluster.storage_containers.get())

    assert call("GET", "/api/v1/tasks/{uuid}/", uuid=task.uuid).json()["created_by"] is None
    assert call("GET", "/api/v1/tasks/").status_code == 200
    listed = call("GET", "/api/v1/vms/").json()["results"][0]
    assert listed["host"] is None and listed["cdroms"][-1]["image"] is None
    assert call("GET", "/api/v1/vms/{uuid}/", uuid=vm.uuid).json()["host"] is None
    assert call("GET", "/api/v1/vms/{uuid}/guest-tools/", uuid=vm.uuid).json()["certificate_serial"] is None
    assert call("GET", "/api/v1/customization-scripts/").json()["results"][0]["owner"] is None
    assert call("GET", "/api/v1/docker-hosts/").json()["results"][0]["vm"] is None
    assert call("GET", "/api/v1/volume-groups/").json()["results"][0]["created_by_host"] is None


def test_refusals_are_documented_json(call, vm, cluster):
    assert call("DELETE", "/api/v1/clusters/{uuid}/", uuid=cluster.uuid).status_code == 409  # still in use
    assert Cluster.objects.filter(pk=cluster.pk).exists()
    assert call("GET", "/api/v1/vms/", query={"page": 9}).status_code == 404  # no such page
    assert call("POST", "/api/v1/vms/{uuid}/power/", uuid=vm.uuid, body={"action": "fly"}).status_code == 400
    assert call("POST", "/api/v1/vms/{uuid}/eject-iso/", uuid=vm.uuid, body={"slot": 0}).status_code in (400, 409)
    group = VolumeGroup.objects.create(cluster=cluster, name="busy", storage_container=cluster.storage_containers.get(),
                                       state=VolumeGroup.State.READY)
    VolumeGroupAttachment.objects.create(group=group, vm=vm)  # being attached: its task is still to run
    assert call("POST", "/api/v1/volume-groups/{uuid}/detach/", uuid=group.uuid, body={}).status_code == 423


def test_a_url_nothing_serves_and_a_body_django_will_not_parse_answer_json_under_the_api(call, api, vm):
    not_found = call("GET", "/api/v1/clusters/{uuid}/", uuid="not-a-uuid")  # the route's pattern refuses it
    assert not_found.status_code == 404 and not_found.json() == {"detail": "Not found."}
    fields = {"uuids": [str(vm.uuid)] * 1001, "action": "power-on"}  # Django reads at most 1000 form fields
    too_many = call("POST", "/api/v1/vms/bulk/", body=fields, media_type="multipart/form-data")
    assert too_many.status_code == 400 and too_many.json() == {"detail": "The request could not be read."}
    assert api.get("/no-such-page/").status_code == 404  # pages stay pages
    assert "text/html" in api.get("/no-such-page/")["Content-Type"]
