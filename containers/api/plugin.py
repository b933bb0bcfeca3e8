"""The endpoints the volume plugin calls with its Docker host's key, under /api/v1/docker-host/. The key may
list and create Docker-backed volume groups, attach, detach and delete them for its own host, report their
usage, read the tasks it asked for, and nothing else.

The key reaches only the groups its host created or holds, or that an Admin shared with it
(`VolumeGroup.objects.reachable_by`); any other Docker volume of the cluster answers 404 as if absent, but its
name stays taken (a create of it is refused). Only the creating host deletes a group.

A change answers its task: with `?wait=1` it is done within the request where its work is local (see
services/volume_groups.py) and answered 200, with the volume as it now is (`volume`), or refused saying why;
otherwise 202, and the plugin follows the task. A create may attach the new volume to the asking host at once
(`attach`), for the Mount that follows it."""

import re
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from console.api.serializers import TaskSerializer
from console.api.views import valid
from console.core.actors import Actor, client_address
from console.core.errors import Conflict, InvalidRequest
from console.core.models import Task

from ..models import DockerHost, VolumeGroup
from ..services import attachments, docker_hosts, volume_groups
from ..services.targets import Target
from .authentication import DockerHostAuthentication, IsDockerHost

# Docker's own rule for volume names, within our 63-character names.
DOCKER_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,62}$")
FSTYPES = ("ext4", "xfs")
MIN_XFS_BYTES = 300 * 1000**2  # mkfs.xfs refuses smaller filesystems
PACKAGE = "facet-volume-plugin.deb"


class HelloSerializer(serializers.Serializer):
    docker_version = serializers.CharField(max_length=64, allow_blank=True)
    plugin_version = serializers.CharField(max_length=64, allow_blank=True)
    probes = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=64), default=dict)


class CreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    size_bytes = serializers.IntegerField(min_value=1)
    fstype = serializers.ChoiceField(choices=FSTYPES, default="ext4")
    container = serializers.CharField(max_length=63, required=False, allow_blank=True, default="")
    attach = serializers.BooleanField(default=False, help_text="Attach it to this host at once (for its Mount)")

    def validate_name(self, value: str) -> str:
        if not DOCKER_VOLUME_NAME.match(value):
            raise serializers.ValidationError(
                "a volume name is 2 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value

    def validate(self, attrs):
        if attrs["fstype"] == "xfs" and attrs["size_bytes"] < MIN_XFS_BYTES:
            raise serializers.ValidationError({"size_bytes": "an xfs filesystem needs at least 300 MB"})
        return attrs


class UsageSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    used_bytes = serializers.IntegerField(min_value=0, allow_null=True)
    mounts = serializers.ListField(child=serializers.CharField(max_length=128), max_length=1000)


class UsageReportSerializer(serializers.Serializer):
    volumes = UsageSerializer(many=True, max_length=1000)


class DetachSerializer(serializers.Serializer):
    used_bytes = serializers.IntegerField(min_value=0, allow_null=True, required=False)


class PluginView(APIView):
    authentication_classes = [DockerHostAuthentication]
    permission_classes = [IsDockerHost]
    schema = None  # a contract with our own plugin, not part of the public API's documentation

    @property
    def host(self) -> DockerHost:
        return self.request.auth

    @property
    def actor(self) -> Actor:
        return Actor(user=None, source_address=client_address(self.request))

    def reachable(self):
        return VolumeGroup.objects.with_details().reachable_by(self.host)

    def volume(self, name: str) -> VolumeGroup:
        return get_object_or_404(self.reachable(), docker_volume=name)

    @property
    def wait(self) -> bool:
        return self.request.query_params.get("wait") == "1"

    def answer(self, task: Task, name: str = "") -> Response:
        """The task; once it has ended here (`wait`) with success, the volume `name` as it now is."""
        if not task.ended:
            return Response(TaskSerializer(task).data, status=status.HTTP_202_ACCEPTED)
        data = TaskSerializer(task).data
        if name and task.status == Task.Status.SUCCEEDED:
            data["volume"] = self.describe(self.volume(name))
        return Response(data)

    def ready_host(self) -> DockerHost:
        if self.host.state != DockerHost.State.READY:
            raise Conflict({"docker_host": [f"Docker host {self.host.name} is {self.host.get_state_display()}"
                                            + (f": {self.host.problem}" if self.host.problem else "")]})
        return self.host

    def describe(self, group: VolumeGroup) -> dict:
        """A Docker-backed group as the plugin needs it, with how this host reaches its disks."""
        attachment = getattr(group, "attachment", None)
        here = attachment is not None and attachment.docker_host_id == self.host.pk
        return {
            "name": group.docker_volume, "uuid": str(group.uuid), "state": group.state, "fstype": group.fstype,
            "size_bytes": group.size_bytes, "container": group.storage_container.name,
            "attached_to": Target.of(attachment).name if attachment else None,
            "attached_here": here,
            "devices": [self.device(group, disk) for disk in group.disks.all()],
        }

    def device(self, group: VolumeGroup, disk) -> dict:
        found = {"serial": disk.serial, "size_bytes": disk.size_bytes}
        if self.host.kind == DockerHost.Kind.VM:
            return {**found, "path": f"/dev/disk/by-id/virtio-{disk.serial}", "loop": False}
        return {**found, "path": str(group.storage_container.resolve(disk.file_name)), "loop": True}


class SelfView(PluginView):
    def get(self, request):
        return Response({"name": self.host.name, "uuid": str(self.host.uuid), "kind": self.host.kind,
                         "state": self.host.state, "containers": docker_hosts.storage_containers(self.host)})


class HelloView(PluginView):
    def post(self, request):
        data = valid(HelloSerializer, request)
        host = docker_hosts.hello(self.host, docker_version=data["docker_version"],
                                  plugin_version=data["plugin_version"], probes=data["probes"])
        return Response({"name": host.name, "state": host.state,
                         "containers": [c.name for c in host.storage_containers_seen.all()]})


class VolumeListView(PluginView):
    def get(self, request):
        return Response([self.describe(group) for group in self.reachable()])

    def post(self, request):
        """Create is idempotent: a Docker volume of that name that exists already is simply described."""
        data = valid(CreateSerializer, request)
        host = self.ready_host()
        existing = VolumeGroup.objects.filter(cluster=host.cluster).filter(
            Q(docker_volume=data["name"]) | Q(name=data["name"])).first()
        if existing is not None:
            if existing.docker_volume != data["name"]:
                raise Conflict({"name": [f"volume group {data['name']} exists and backs no Docker volume"]})
            if not self.reachable().filter(pk=existing.pk).exists():
                raise Conflict({"name": [f"Docker volume {data['name']} belongs to another Docker host; an Admin "
                                         f"may share it with {host.name}"]})
            return Response(self.describe(self.volume(data["name"])))
        storage_container = (docker_hosts.storage_container_named(host, data["container"]) if data["container"]
                     else host.cluster.storage_containers.first())
        if storage_container is None:
            raise InvalidRequest({"container": ["the cluster has no storage container"]})
        # A registered machine attaches by loop device, so the console attaches it there within this request;
        # a VM needs its hypervisor, and its Mount asks for the attach.
        attach_here = data["attach"] and self.wait and host.kind == DockerHost.Kind.EXTERNAL
        task = volume_groups.request_create(
            self.actor, data["name"], data["size_bytes"], storage_container=storage_container,
            docker_volume=data["name"], fstype=data["fstype"], description=f"Docker volume from {host.name}",
            created_by_host=host,
            attach_to=Target(docker_host=host) if attach_here else None, wait=self.wait)
        return self.answer(task, data["name"])


class VolumeView(PluginView):
    def get(self, request, name: str):
        return Response(self.describe(self.volume(name)))

    def delete(self, request, name: str):
        task = volume_groups.request_delete(self.actor, self.volume(name), asked_by=self.ready_host(), wait=self.wait)
        return self.answer(task)


class AttachView(PluginView):
    def post(self, request, name: str):
        task = attachments.request_attach(self.actor, self.volume(name), Target(docker_host=self.ready_host()),
                                          asked_by=self.host, wait=self.wait)
        return self.answer(task, name)


class DetachView(PluginView):
    """After the last unmount; the body may carry the space used as the last container left it."""

    def post(self, request, name: str):
        data = valid(DetachSerializer, request)
        task = attachments.request_detach(self.actor, self.volume(name), asked_by=self.host, wait=self.wait,
                                          used_bytes=data.get("used_bytes"))
        return self.answer(task)


class UsageView(PluginView):
    """What the plugin sees of its mounted volumes, periodically: space used and the containers (caller ids)
    using each. The answer describes them, so the plugin learns of a disk grown in the console."""

    def post(self, request):
        data = valid(UsageReportSerializer, request)
        groups = docker_hosts.report_usage(self.host, data["volumes"])
        return Response({"volumes": [self.describe(group) for group in groups]})


class PackageView(PluginView):
    """The plugin's .deb, for Docker host VMs to install on first boot (the Makefile builds it into
    DATA_DIR/packages)."""

    def get(self, request):
        return package_response()


def package_response() -> FileResponse:
    """The plugin's .deb as a download (for Docker hosts here, for Admins on the console's key page)."""
    package = Path(settings.DATA_DIR) / "packages" / PACKAGE
    if not package.is_file():
        raise Http404(f"the console has no {PACKAGE} yet (make plugin-deb builds it)")
    return FileResponse(package.open("rb"), as_attachment=True, filename=PACKAGE,
                        content_type="application/vnd.debian.binary-package")


class TaskView(PluginView):
    """Only the tasks this host asked for."""

    def get(self, request, uuid):
        task = get_object_or_404(Task, uuid=uuid, params__asked_by=str(self.host.uuid))
        return Response(TaskSerializer(task).data)
