"""The HTTP contract: the volume group and Docker host API for people, and the plugin endpoints for a Docker
host's key, which reach those endpoints, for that host, and nothing else."""

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from console.core.models import AuditEvent, Task
from console.models import StorageContainer
from containers.models import DockerHost, VolumeGroup, VolumeGroupAttachment
from containers.services import attachments, docker_hosts, shares, volume_groups
from containers.services.targets import Target

from ..conftest import client_for

MiB = 1024**2
PLUGIN = "/api/v1/docker-host/"


def host_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def host_api(docker_host):
    return host_client(docker_host.key)


@pytest.fixture
def other_host(cluster, actor):
    host, key = docker_hosts.register(actor, "dh-2")
    storage_container = cluster.storage_containers.get()
    docker_hosts.hello(host, docker_version="", plugin_version="",
                       probes={str(storage_container.uuid): host.probe_file(storage_container).read_text()})
    host.key = key
    return host


def test_create_list_attach_detach_delete(api, cluster, vm, run_tasks):
    answer = api.post("/api/v1/volume-groups/", {"name": "db", "size_bytes": 32 * MiB, "disk_count": 2},
                      format="json")
    assert answer.status_code == 202 and answer.json()["kind"] == "volume-group.create"
    run_tasks()
    [group] = api.get("/api/v1/volume-groups/?search=d").json()["results"]
    assert (group["size_bytes"], len(group["disks"]), group["attachment"]) == (64 * MiB, 2, None)
    path = f"/api/v1/volume-groups/{group['uuid']}/"
    assert api.post(path + "attach/", {"vm": str(vm.uuid)}, format="json").status_code == 202
    run_tasks()
    assert api.get(path).json()["attachment"] == {"type": "vm", "uuid": str(vm.uuid), "name": "web-1",
                                                  "state": "attached"}
    assert api.delete(path).status_code == 409
    assert api.post(path + "grow/", {"size_bytes": 48 * MiB}, format="json").status_code == 202
    assert api.post(path + "detach/", {}, format="json").status_code == 202
    run_tasks()
    assert api.delete(path).status_code == 202
    run_tasks()
    assert not VolumeGroup.objects.exists()


def test_attach_needs_exactly_one_target(api, actor, vm, docker_host):
    volume_groups.request_create(actor, "g", MiB)
    group = VolumeGroup.objects.get()
    both = api.post(f"/api/v1/volume-groups/{group.uuid}/attach/",
                    {"vm": str(vm.uuid), "docker_host": str(docker_host.uuid)}, format="json")
    assert both.status_code == 400


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("operator", 202), ("admin", 202)])
def test_roles_on_volume_groups(request, cluster, role, status):
    client = client_for(request.getfixturevalue(role))
    assert client.get("/api/v1/volume-groups/").status_code == 200
    answer = client.post("/api/v1/volume-groups/", {"name": "g", "size_bytes": MiB}, format="json")
    assert answer.status_code == status


def test_registering_a_docker_host_is_for_admins_and_shows_the_key_once(cluster, operator, api):
    assert client_for(operator).post("/api/v1/docker-hosts/register/", {"name": "x"}, format="json").status_code == 403
    answer = api.post("/api/v1/docker-hosts/register/", {"name": "edge-1", "address": "10.0.0.9"}, format="json")
    assert answer.status_code == 201
    key = answer.json()["token"]
    assert key.startswith("facetdh_") and DockerHost.objects.get().key_hash == DockerHost.hash(key)
    assert "token" not in api.get(f"/api/v1/docker-hosts/{answer.json()['uuid']}/").json()
    assert api.delete(f"/api/v1/docker-hosts/{answer.json()['uuid']}/").status_code == 204


def test_a_docker_host_key_reaches_nothing_but_the_plugin_endpoints(host_api, docker_host):
    for path in ("/api/v1/vms/", "/api/v1/volume-groups/", "/api/v1/tasks/", "/api/v1/docker-hosts/"):
        assert host_api.get(path).status_code == 401, path
    assert host_api.get(PLUGIN).json()["name"] == "dh-1"


def test_a_user_token_does_not_reach_the_plugin_endpoints(api):
    assert api.get(PLUGIN + "volumes/").status_code == 401


def test_plugin_creates_and_lists_only_docker_backed_groups(host_api, docker_host, actor, run_tasks):
    volume_groups.request_create(actor, "not-docker", MiB)
    answer = host_api.post(PLUGIN + "volumes/", {"name": "PGDataVol", "size_bytes": 400 * MiB, "fstype": "xfs",
                                                 "container": "default"}, format="json")
    assert answer.status_code == 202
    run_tasks()
    task = host_api.get(f"{PLUGIN}tasks/{answer.json()['uuid']}/").json()
    assert task["status"] == "succeeded"
    listed = host_api.get(PLUGIN + "volumes/").json()
    assert [v["name"] for v in listed] == ["PGDataVol"]
    assert listed[0]["fstype"] == "xfs" and listed[0]["devices"][0]["loop"] is True
    again = host_api.post(PLUGIN + "volumes/", {"name": "PGDataVol", "size_bytes": MiB}, format="json")
    assert again.status_code == 200  # Create is idempotent
    clash = host_api.post(PLUGIN + "volumes/", {"name": "not-docker", "size_bytes": MiB}, format="json")
    assert clash.status_code == 409
    assert host_api.get(PLUGIN + "volumes/not-docker/").status_code == 404
    group = VolumeGroup.objects.get(docker_volume="PGDataVol")
    assert group.created_by_host == docker_host and group.disks.get().size_bytes == 400 * MiB


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "bad name", "size_bytes": MiB}, "name"),
    ({"name": "x" * 64, "size_bytes": MiB}, "name"),
    ({"name": "ok", "size_bytes": MiB, "fstype": "btrfs"}, "fstype"),
    ({"name": "ok", "size_bytes": 100 * MiB, "fstype": "xfs"}, "size_bytes"),
    ({"name": "ok", "size_bytes": 60 * 1024**4}, "size_bytes"),
    ({"name": "ok", "size_bytes": MiB, "container": "nowhere"}, "container"),
])
def test_plugin_create_refuses_bad_input(host_api, body, field):
    answer = host_api.post(PLUGIN + "volumes/", body, format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.json()
    assert not VolumeGroup.objects.exists()


def docker_volume(actor, run_tasks, name: str = "shared", shared_with: tuple[DockerHost, ...] = ()) -> VolumeGroup:
    """A Docker volume made in the console, which a host's key reaches once it holds it or is given a share."""
    volume_groups.request_create(actor, name, MiB, docker_volume=name, fstype="ext4")
    run_tasks()
    group = VolumeGroup.objects.get(docker_volume=name)
    for host in shared_with:
        shares.share(actor, group, host)
    return group


def test_a_group_mounted_on_another_host_is_refused_with_its_name(host_api, docker_host, other_host, actor,
                                                                  run_tasks):
    group = docker_volume(actor, run_tasks, shared_with=(docker_host, other_host))
    assert host_client(other_host.key).post(PLUGIN + "volumes/shared/attach/").status_code == 202
    run_tasks()
    refused = host_api.post(PLUGIN + "volumes/shared/attach/")
    assert refused.status_code == 409 and "attached to Docker host dh-2" in str(refused.json())
    assert host_api.post(PLUGIN + "volumes/shared/detach/").status_code == 409
    assert host_api.delete(PLUGIN + "volumes/shared/").status_code == 409
    report = host_api.post(PLUGIN + "usage/", {"volumes": [{"name": "shared", "used_bytes": 1, "mounts": ["x"]}]},
                           format="json")
    assert report.json()["volumes"][0]["attached_here"] is False
    group.refresh_from_db()
    assert group.attachment.docker_host == other_host and (group.used_bytes, group.mounts) == (None, [])


def test_a_host_reads_its_own_tasks_only(host_api, other_host, actor, run_tasks):
    docker_volume(actor, run_tasks, shared_with=(other_host,))
    theirs = host_client(other_host.key).post(PLUGIN + "volumes/shared/attach/").json()
    assert host_api.get(f"{PLUGIN}tasks/{theirs['uuid']}/").status_code == 404
    admins = Task.objects.filter(kind="volume-group.create").get()
    assert host_api.get(f"{PLUGIN}tasks/{admins.uuid}/").status_code == 404


def test_usage_is_recorded_for_the_pages_and_answers_the_sizes(host_api, docker_host, actor, run_tasks):
    group = docker_volume(actor, run_tasks)
    attachments.request_attach(actor, group, Target(docker_host=docker_host))
    run_tasks()
    volume_groups.request_grow(actor, group, 2 * MiB)
    run_tasks()
    answer = host_api.post(PLUGIN + "usage/", {"volumes": [
        {"name": "shared", "used_bytes": 4096, "mounts": ["abc", "def"]}]}, format="json")
    assert answer.status_code == 200
    assert answer.json()["volumes"][0]["devices"][0]["size_bytes"] == 2 * MiB  # the plugin learns of the grow
    group.refresh_from_db()
    assert (group.used_bytes, group.mounts) == (4096, ["abc", "def"])
    bad = host_api.post(PLUGIN + "usage/", {"volumes": [{"name": "shared", "used_bytes": -1, "mounts": []}]},
                        format="json")
    assert bad.status_code == 400


def test_waited_changes_are_done_within_the_request_as_ended_tasks(host_api, docker_host):
    created = host_api.post(PLUGIN + "volumes/?wait=1", {"name": "quick", "size_bytes": MiB}, format="json")
    assert created.status_code == 200 and created.json()["status"] == "succeeded"
    assert created.json()["volume"]["state"] == "ready"
    attached = host_api.post(PLUGIN + "volumes/quick/attach/?wait=1").json()
    assert attached["status"] == "succeeded" and attached["volume"]["attached_here"] is True
    detached = host_api.post(PLUGIN + "volumes/quick/detach/?wait=1", {"used_bytes": 8192}, format="json").json()
    assert detached["status"] == "succeeded"
    group = VolumeGroup.objects.get(docker_volume="quick")
    assert not hasattr(group, "attachment") and group.used_bytes == 8192
    assert host_api.delete(PLUGIN + "volumes/quick/?wait=1").json()["status"] == "succeeded"
    assert not VolumeGroup.objects.filter(docker_volume="quick").exists()
    # The same history as a worker's: every change a task that ran, and an audit record.
    tasks = Task.objects.filter(entity_name="quick").order_by("id")
    assert [(t.kind, t.status) for t in tasks] == [(f"volume-group.{kind}", "succeeded")
                                                   for kind in ("create", "attach", "detach", "delete")]
    assert all(t.started_at and t.finished_at for t in tasks)
    assert AuditEvent.objects.filter(entity_name="quick").count() == 4


def test_a_waited_change_that_fails_is_refused_and_changes_nothing(host_api, docker_host):
    host_api.post(PLUGIN + "volumes/?wait=1", {"name": "lost", "size_bytes": MiB}, format="json")
    VolumeGroup.objects.get(docker_volume="lost").disks.get().path.unlink()
    failed = host_api.post(PLUGIN + "volumes/lost/attach/?wait=1")
    assert failed.status_code == 409 and "vanished" in failed.json()["volume_group"][0]
    assert not hasattr(VolumeGroup.objects.get(docker_volume="lost"), "attachment")
    assert not Task.objects.filter(kind="volume-group.attach").exists()  # the change and its task: both or none


def test_a_create_attaches_at_once_where_the_host_can_take_it(host_api, docker_host, tmp_path,
                                                               django_capture_on_commit_callbacks):
    here = host_api.post(PLUGIN + "volumes/?wait=1", {"name": "mine", "size_bytes": MiB, "attach": True},
                         format="json").json()
    assert here["volume"]["attached_here"] is True and "attached to Docker host dh-1" in here["message"]
    assert AuditEvent.objects.filter(entity_name="mine", action="volume-group.attach").exists()
    (tmp_path / "unseen").mkdir()
    StorageContainer.objects.create(cluster=docker_host.cluster, name="unseen", path=str(tmp_path / "unseen"))
    elsewhere = host_api.post(PLUGIN + "volumes/?wait=1", {"name": "theirs", "size_bytes": MiB, "attach": True,
                                                         "container": "unseen"}, format="json")
    assert elsewhere.status_code == 200 and elsewhere.json()["volume"]["attached_here"] is False  # for another host
    group = VolumeGroup.objects.get(docker_volume="theirs")
    with django_capture_on_commit_callbacks(execute=True):
        assert host_api.delete(PLUGIN + "volumes/theirs/?wait=1").status_code == 200
    assert not (tmp_path / "unseen" / "volume-groups" / str(group.uuid)).exists()  # files go once the rows have


def test_a_create_with_a_bad_attach_is_refused_naming_it(host_api, docker_host):
    refused = host_api.post(PLUGIN + "volumes/?wait=1", {"name": "odd", "size_bytes": MiB, "attach": "maybe"},
                            format="json")
    assert refused.status_code == 400 and "attach" in refused.json()
    assert not VolumeGroup.objects.exists()


def test_a_create_whose_file_cannot_be_made_leaves_nothing(host_api, docker_host):
    storage_container = docker_host.cluster.storage_containers.get()
    (Path(storage_container.path) / "volume-groups").write_text("not a directory")  # where the disk files would go
    refused = host_api.post(PLUGIN + "volumes/?wait=1", {"name": "nowhere", "size_bytes": MiB}, format="json")
    assert refused.status_code == 409 and "could not make disk file" in refused.json()["volume_group"][0]
    assert not VolumeGroup.objects.exists() and not Task.objects.filter(kind="volume-group.create").exists()


def test_a_refused_host_cannot_delete_docker_volumes(cluster, actor, run_tasks):
    host, key = docker_hosts.register(actor, "blind")
    docker_volume(actor, run_tasks, "kept", shared_with=(host,))
    assert host_client(key).delete(PLUGIN + "volumes/kept/").status_code == 409
    assert VolumeGroup.objects.filter(docker_volume="kept", state="ready").exists()


def test_hello_refuses_a_machine_that_sees_no_container(cluster, actor):
    host, key = docker_hosts.register(actor, "blind")
    client = host_client(key)
    answer = client.post(PLUGIN + "hello/", {"docker_version": "27", "plugin_version": "0.1", "probes": {}},
                         format="json")
    assert answer.status_code == 409 and "cannot see any storage container" in str(answer.json())
    assert client.post(PLUGIN + "volumes/", {"name": "v1", "size_bytes": MiB}, format="json").status_code == 409


def test_a_removed_host_key_stops_working(host_api, docker_host, actor):
    docker_hosts.remove(actor, docker_host)
    assert host_api.get(PLUGIN).status_code == 401


def test_lists_take_a_fixed_number_of_queries(api, actor, vm, docker_host, run_tasks, django_assert_max_num_queries):
    for n in range(12):
        volume_groups.request_create(actor, f"g{n}", MiB, disk_count=2)
    run_tasks()
    first, second = VolumeGroup.objects.all()[:2]
    attachments.request_attach(actor, first, Target(vm=vm))
    attachments.request_attach(actor, second, Target(docker_host=docker_host))
    run_tasks()
    with django_assert_max_num_queries(8):
        assert len(api.get("/api/v1/volume-groups/").json()["results"]) == 12
    with django_assert_max_num_queries(8):
        assert api.get("/api/v1/docker-hosts/").status_code == 200


@pytest.mark.parametrize(("proxies", "recorded"), [(None, "127.0.0.1"), (1, "203.0.113.7")])
def test_the_audit_names_the_plugins_host_behind_the_configured_proxies(host_api, settings, proxies, recorded):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
    host_api.post(PLUGIN + "volumes/", {"name": "quick", "size_bytes": MiB}, format="json",
                  HTTP_X_FORWARDED_FOR="198.51.100.9, 203.0.113.7")
    assert AuditEvent.objects.get(action="volume-group.create").source_address == recorded


def plugin_names(client: APIClient) -> set[str]:
    return {volume["name"] for volume in client.get(PLUGIN + "volumes/").json()}


def test_a_hosts_key_reaches_only_the_docker_volumes_it_made_holds_or_was_shared(host_api, docker_host, other_host):
    theirs = host_client(other_host.key)
    assert theirs.post(PLUGIN + "volumes/?wait=1", {"name": "their-data", "size_bytes": MiB},
                       format="json").status_code == 200
    assert host_api.post(PLUGIN + "volumes/?wait=1", {"name": "my-data", "size_bytes": MiB},
                         format="json").status_code == 200
    assert plugin_names(host_api) == {"my-data"} and plugin_names(theirs) == {"their-data"}
    volume = PLUGIN + "volumes/their-data/"
    assert host_api.get(volume).status_code == 404
    assert host_api.post(volume + "attach/?wait=1").status_code == 404
    assert host_api.post(volume + "detach/?wait=1").status_code == 404
    assert host_api.delete(volume + "?wait=1").status_code == 404
    taken = host_api.post(PLUGIN + "volumes/", {"name": "their-data", "size_bytes": MiB}, format="json")
    assert taken.status_code == 409 and "belongs to another Docker host" in str(taken.json())
    report = host_api.post(PLUGIN + "usage/", {"volumes": [{"name": "their-data", "used_bytes": 9, "mounts": ["x"]}]},
                           format="json")
    assert report.json() == {"volumes": []}
    group = VolumeGroup.objects.get(docker_volume="their-data")  # untouched
    assert (group.state, group.used_bytes, group.mounts) == ("ready", None, [])
    assert not VolumeGroupAttachment.objects.filter(group=group).exists()


def test_an_admin_shares_a_docker_volume_with_another_host_which_uses_it_but_cannot_remove_it(
        api, operator, host_api, docker_host, other_host):
    theirs = host_client(other_host.key)
    theirs.post(PLUGIN + "volumes/?wait=1", {"name": "swarm-data", "size_bytes": MiB}, format="json")
    theirs.post(PLUGIN + "volumes/swarm-data/detach/?wait=1")
    group = VolumeGroup.objects.get(docker_volume="swarm-data")
    path = f"/api/v1/volume-groups/{group.uuid}/"
    body = {"docker_host": str(docker_host.uuid)}
    assert client_for(operator).post(path + "share/", body, format="json").status_code == 403
    shared = api.post(path + "share/", body, format="json")
    assert shared.status_code == 200 and shared.json()["shared_with"] == [docker_host.name]
    assert shared.json()["created_by_host"] == other_host.name

    assert "swarm-data" in plugin_names(host_api)
    assert host_api.post(PLUGIN + "volumes/swarm-data/attach/?wait=1").json()["volume"]["attached_here"] is True
    assert host_api.post(PLUGIN + "volumes/swarm-data/detach/?wait=1").status_code == 200
    refused = host_api.delete(PLUGIN + "volumes/swarm-data/?wait=1")
    assert refused.status_code == 409 and "not created by Docker host dh-1" in str(refused.json())
    assert AuditEvent.objects.filter(action="volume-group.share", entity_uuid=group.uuid).exists()

    assert api.post(path + "unshare/", body, format="json").json()["shared_with"] == []
    assert host_api.get(PLUGIN + "volumes/swarm-data/").status_code == 404
    assert theirs.delete(PLUGIN + "volumes/swarm-data/?wait=1").status_code == 200  # its creator still may
