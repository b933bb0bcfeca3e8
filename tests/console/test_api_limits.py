"""The API's edges (issue 14, items 9, 10 and 19): bodies are capped before they are read (uploads aside), a
delete of a record still in use is a 409 that says what uses it, and the API root links to the API."""

import pytest
from rest_framework.test import APIClient

from console.core.models import AuditEvent
from console.models import Cluster, Host, Network, StorageContainer

MiB = 1024**2


@pytest.mark.parametrize("path", ["/api/v1/auth/token/", "/api/v1/vms/bulk/", "/login/"])
def test_a_body_over_the_limit_is_a_413_before_it_is_read(cluster, admin, settings, path):
    settings.FACET_REQUEST_BODY_LIMIT = MiB
    client = APIClient()
    client.force_authenticate(admin)
    body = b'{"username": "' + b"a" * (2 * MiB) + b'"}'
    response = client.generic("POST", path, body, content_type="application/json")
    assert response.status_code == 413
    assert "(2 MiB) is over the limit of 1 MiB (FACET_REQUEST_BODY_LIMIT)" in response.content.decode()


def test_a_body_under_the_limit_goes_through(cluster, admin):
    response = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
    assert response.status_code in (400, 401)


def test_uploads_stream_past_the_body_limit(cluster, api, settings):
    settings.FACET_REQUEST_BODY_LIMIT = 1024
    data = b"\0" * (64 * 1024)
    response = api.generic("POST", "/api/v1/images/upload/?name=big&kind=disk", data,
                           content_type="application/octet-stream")
    assert response.status_code == 201, response.content


def test_deleting_records_in_use_is_a_409_naming_the_users(api, cluster, vm):
    host = vm.host
    answer = api.delete(f"/api/v1/hosts/{host.uuid}/")
    assert answer.status_code == 409
    assert answer.json() == {"detail": ["still used by 1 vm (web-1); delete or move those first"]}
    assert Host.objects.filter(pk=host.pk).exists()
    assert not AuditEvent.objects.filter(action="host.delete").exists()

    lan = Network.objects.get(name="lan")
    vm.nics.create(index=0, network=lan, mac="52:54:00:00:00:01")
    answer = api.delete(f"/api/v1/networks/{lan.uuid}/")
    assert answer.status_code == 409 and "1 nic (" in answer.json()["detail"][0]

    storage_container = StorageContainer.objects.get()
    detail = api.delete(f"/api/v1/storage-containers/{storage_container.uuid}/").json()["detail"][0]
    assert detail == "still used by 2 images (base-disk, rescue-iso); delete or move those first"

    detail = api.delete(f"/api/v1/clusters/{cluster.uuid}/").json()["detail"][0]
    assert "2 hosts (host-1, host-2)" in detail and "1 vm (web-1)" in detail
    assert Cluster.objects.filter(pk=cluster.pk).exists()


def test_a_record_no_longer_used_is_deleted(api, cluster):
    lan = Network.objects.get(name="lan")
    assert api.delete(f"/api/v1/networks/{lan.uuid}/").status_code == 204


def test_the_api_root_links_to_the_api(api, cluster):
    links = api.get("/api/v1/").json()
    assert links["vms"] == "http://testserver/api/v1/vms/"
    assert all(url.startswith("http://testserver/api/v1/") for url in links.values()), links
