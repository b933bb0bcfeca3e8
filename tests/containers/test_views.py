"""The console pages of volume groups and Docker hosts."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from console.core.models import AuditEvent
from console.models import Image, Network
from containers.models import DockerHost, VolumeGroup, VolumeGroupAttachment
from containers.services import attachments, volume_groups
from containers.services.targets import Target

pytestmark = pytest.mark.urls("tests.containers.urls_first")
MiB = 1024**2
GiB = 1024**3


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def group(cluster, actor, run_tasks):
    volume_groups.request_create(actor, "pgdata", 64 * MiB, docker_volume="pgdata", fstype="ext4")
    run_tasks()
    return VolumeGroup.objects.get()


def test_the_nav_names_lead_to_our_pages(cluster, viewer):
    assert reverse("volume-groups") == "/volume-groups/" and reverse("docker-hosts") == "/docker-hosts/"
    page = browser(viewer).get("/volume-groups/")
    assert page.status_code == 200 and b"No volume groups" in page.content
    assert b"Create a volume group" not in page.content  # a Viewer sees no forms


def test_list_shows_size_usage_host_volume_and_users(group, docker_host, admin, actor, run_tasks):
    attachments.request_attach(actor, group, Target(docker_host=docker_host))
    run_tasks()
    VolumeGroup.objects.filter(pk=group.pk).update(used_bytes=3 * MiB, mounts=["c1", "c2"])
    page = browser(admin).get("/volume-groups/?docker=true").content.decode()
    for text in ("pgdata", "64 MiB", "3 MiB", "dh-1", "Docker host"):
        assert text in page, text
    assert "pgdata" not in browser(admin).get("/volume-groups/?docker=false").content.decode()


def test_detail_has_disks_attachment_and_history(group, admin):
    page = browser(admin).get(reverse("volume-group-detail", args=[group.uuid])).content.decode()
    disk = group.disks.get()
    assert f"/dev/disk/by-id/virtio-{disk.serial}" in page and "not attached" in page
    assert "volume-group.create" in page  # its task and audit event


def test_create_attach_detach_delete_from_the_pages(cluster, operator, vm, run_tasks):
    client = browser(operator)
    answer = client.post(reverse("volume-group-create"), {
        "name": "scratch", "size_gib": 1, "disk_count": 1, "container": cluster.storage_containers.get().uuid})
    group = VolumeGroup.objects.get(name="scratch")
    assert answer.status_code == 302 and answer["Location"] == reverse("volume-group-detail", args=[group.uuid])
    run_tasks()
    client.post(reverse("volume-group-attach", args=[group.uuid]), {"target": f"vm:{vm.uuid}"})
    run_tasks()
    assert VolumeGroupAttachment.objects.get(group=group).vm == vm
    client.post(reverse("volume-group-grow", args=[group.uuid]), {"index": 0, "size_gib": 2})
    run_tasks()
    assert group.disks.get().size_bytes == 2 * GiB
    page = client.get(reverse("volume-group-detail", args=[group.uuid])).content.decode()
    assert "A VM sees the new size when it is next attached or powered on" in page
    shrink = client.post(reverse("volume-group-grow", args=[group.uuid]), {"index": 0, "size_gib": 1}, follow=True)
    assert "New size: disk 0 already holds 2 GiB; a disk only grows" in shrink.content.decode()
    refused = client.post(reverse("volume-group-delete", args=[group.uuid]), follow=True)
    assert b"detach it first" in refused.content
    client.post(reverse("volume-group-detach", args=[group.uuid]))
    run_tasks()
    client.post(reverse("volume-group-delete", args=[group.uuid]))
    run_tasks()
    assert not VolumeGroup.objects.exists()


def test_viewer_cannot_change_anything(group, viewer):
    assert browser(viewer).post(reverse("volume-group-detach", args=[group.uuid])).status_code == 403
    assert browser(viewer).post(reverse("docker-host-register"), {"name": "x"}).status_code == 403


def test_register_shows_the_key_after_a_redirect_and_the_host_page(cluster, admin):
    client = browser(admin)
    answer = client.post(reverse("docker-host-register"), {"name": "edge-1", "address": "10.1.1.1"})
    host = DockerHost.objects.get()
    assert answer.status_code == 302 and answer["Location"] == reverse("docker-host-key", args=[host.uuid])
    page = client.get(answer["Location"])
    assert b"facetdh_" in page.content and b"FACET_DOCKER_HOST=edge-1" in page.content
    assert "no-store" in page["Cache-Control"]
    key = page.content.decode().split('id="docker-host-key">')[1].split("<")[0]
    assert key in client.get(answer["Location"]).content.decode()  # a reload keeps it (for its minutes)
    assert b"facetdh_" not in browser(admin).get(answer["Location"]).content  # another browser never sees it
    detail = client.get(reverse("docker-host-detail", args=[host.uuid])).content.decode()
    assert "Waiting for the plugin" in detail and "facetdh_" not in detail.replace(host.key_hint, "")
    listing = client.get("/docker-hosts/").content.decode()
    assert "edge-1" in listing and "Registered machine" in listing


def test_regenerate_key_stops_the_old_key_at_once(cluster, admin, operator):
    client = browser(admin)
    client.post(reverse("docker-host-register"), {"name": "edge-1"})
    host = DockerHost.objects.get()
    old_page = client.get(reverse("docker-host-key", args=[host.uuid])).content.decode()
    old_key = old_page.split('id="docker-host-key">')[1].split("<")[0]
    plugin = APIClient()
    plugin.credentials(HTTP_AUTHORIZATION=f"Token {old_key}")
    assert plugin.get("/api/v1/docker-host/volumes/").status_code == 200
    assert browser(operator).post(reverse("docker-host-regenerate-key", args=[host.uuid])).status_code == 403
    answer = client.post(reverse("docker-host-regenerate-key", args=[host.uuid]))
    new_page = client.get(answer["Location"]).content.decode()
    new_key = new_page.split('id="docker-host-key">')[1].split("<")[0]
    assert new_key != old_key and new_key.startswith("facetdh_")
    assert plugin.get("/api/v1/docker-host/volumes/").status_code == 401
    plugin.credentials(HTTP_AUTHORIZATION=f"Token {new_key}")
    assert plugin.get("/api/v1/docker-host/volumes/").status_code == 200
    assert AuditEvent.objects.filter(action="docker-host.key.regenerate", entity_uuid=host.uuid).exists()


def test_the_key_page_links_the_plugin_package(cluster, admin, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / "facet-volume-plugin.deb").write_bytes(b"!<arch>\n")
    client = browser(admin)
    client.post(reverse("docker-host-register"), {"name": "edge-1"})
    page = client.get(reverse("docker-host-key", args=[DockerHost.objects.get().uuid])).content.decode()
    assert f'href="{reverse("docker-host-plugin-package")}"' in page
    assert f"{settings.PUBLIC_URL}/api/v1/docker-host/plugin.deb" in page
    package = client.get(reverse("docker-host-plugin-package"))
    assert package.status_code == 200 and b"".join(package.streaming_content) == b"!<arch>\n"


def test_create_docker_host_vm_from_the_page(cluster, admin):
    image = Image.objects.get(name="base-disk")
    answer = browser(admin).post(reverse("docker-host-create"), {"name": "dh-vm", "image": image.uuid,
                                                                 "vcpus": 1, "memory_gib": 1})
    host = DockerHost.objects.get()
    assert answer.status_code == 302 and answer["Location"] == reverse("docker-host-detail", args=[host.uuid])
    assert host.vm.name == "dh-vm" and host.vm.nics.get().network.name == "lan"  # the cluster's first


def test_a_docker_host_vm_goes_on_the_network_chosen_on_the_page(cluster, admin):
    image = Image.objects.get(name="base-disk")
    dmz = Network.objects.create(cluster=cluster, name="dmz", cidr="10.9.0.0/24")
    page = browser(admin).get("/docker-hosts/").content.decode()
    assert "The cluster&#x27;s first network" in page and "dmz" in page
    browser(admin).post(reverse("docker-host-create"), {"name": "dh-dmz", "image": image.uuid, "vcpus": 1,
                                                        "memory_gib": 1, "network": dmz.uuid})
    assert DockerHost.objects.get().vm.nics.get().network == dmz
    refused = browser(admin).post(reverse("docker-host-create"), {
        "name": "dh-bad", "image": image.uuid, "vcpus": 1, "memory_gib": 1,
        "network": "00000000-0000-0000-0000-000000000000"}, follow=True).content.decode()
    assert "Network: Select a valid choice" in refused and not DockerHost.objects.filter(name="dh-bad").exists()


def test_remove_a_registered_host(docker_host, admin):
    answer = browser(admin).post(reverse("docker-host-remove", args=[docker_host.uuid]), follow=True)
    assert b"Docker host dh-1 removed" in answer.content and not DockerHost.objects.exists()


def test_an_admin_shares_a_docker_volume_with_a_docker_host_from_its_page(group, docker_host, admin, operator):
    path = reverse("volume-group-detail", args=[group.uuid])
    share = reverse("volume-group-share", args=[group.uuid])
    assert 'id="share-host"' not in browser(operator).get(path).content.decode()  # an Operator sees no form
    assert browser(operator).post(share, {"docker_host": docker_host.uuid}).status_code == 403
    client = browser(admin)
    assert f'<option value="{docker_host.uuid}">dh-1</option>' in client.get(path).content.decode()
    done = client.post(share, {"docker_host": docker_host.uuid}, follow=True).content.decode()
    assert "pgdata is now shared with dh-1" in done
    assert list(group.shared_with.all()) == [docker_host]
    client.post(share, {"docker_host": docker_host.uuid, "unshare": "1"})
    assert not group.shared_with.exists()
