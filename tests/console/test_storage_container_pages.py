"""Every page that says where files live names the storage container: a template reading a field that is not
there renders a blank, not an error, so each page is checked for the name itself."""

import pytest
from django.test import Client
from django.urls import reverse

from console.models import Image, StorageContainer
from containers.models import VolumeGroup
from containers.services import docker_hosts, volume_groups

MiB = 1024**2
NAME = "ssd-pool-7"


@pytest.fixture
def browser(cluster, admin) -> Client:
    StorageContainer.objects.update(name=NAME)
    client = Client()
    client.force_login(admin)
    return client


def shown(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_the_inventory_pages_name_the_storage_container(browser, disk_vm):
    assert NAME in shown(browser, reverse("dashboard"))
    assert NAME in shown(browser, reverse("storage-list"))
    images = shown(browser, reverse("image-list"))
    assert images.count(NAME) >= Image.objects.count() + 1  # each image's row, and the upload form's choice
    assert f"<td>{NAME}</td>" in shown(browser, reverse("vm-detail", args=[disk_vm.uuid]))


def test_the_container_service_pages_name_the_storage_container(browser, actor, run_tasks):
    volume_groups.request_create(actor, "pgdata", 64 * MiB)
    run_tasks()
    assert NAME in shown(browser, reverse("volume-group-detail", args=[VolumeGroup.objects.get().uuid]))
    host, _ = docker_hosts.register(actor, "edge-1")
    storage_container = StorageContainer.objects.get()
    docker_hosts.hello(host, docker_version="27.0", plugin_version="1",
                       probes={str(storage_container.uuid): host.probe_file(storage_container).read_text()})
    assert NAME in shown(browser, reverse("docker-host-detail", args=[host.uuid]))
