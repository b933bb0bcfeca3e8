"""REST API of volume groups and Docker hosts for people and scripts (roles as everywhere else)."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from console.api import serializers as console_serializers
from console.api.views import ByUuid, accepted, valid
from console.core.access import ADMIN, OPERATOR
from console.core.actors import Actor

from ..filtersets import DockerHostFilterSet, VolumeGroupFilterSet
from ..models import DockerHost, VolumeGroup
from ..services import attachments, docker_hosts, shares, volume_groups
from ..services.targets import Target
from . import serializers as s


class VolumeGroupViewSet(ByUuid, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = VolumeGroup.objects.with_details()
    serializer_class = s.VolumeGroupSerializer
    filterset_class = VolumeGroupFilterSet
    ordering_fields = ["name", "created_at"]

    @property
    def write_role(self) -> str:
        return ADMIN if self.action in ("share", "unshare") else OPERATOR

    @extend_schema(request=s.VolumeGroupCreateSerializer, responses={202: console_serializers.TaskSerializer})
    def create(self, request):
        data = valid(s.VolumeGroupCreateSerializer, request)
        return accepted(volume_groups.request_create(
            Actor.from_request(request), data["name"], data["size_bytes"], disk_count=data["disk_count"],
            storage_container=data.get("container"), description=data["description"]))

    @extend_schema(request=s.GrowSerializer, responses={202: console_serializers.TaskSerializer})
    @action(detail=True, methods=["post"])
    def grow(self, request, uuid=None):
        data = valid(s.GrowSerializer, request)
        return accepted(volume_groups.request_grow(Actor.from_request(request), self.get_object(),
                                                   data["size_bytes"], data["index"]))

    @extend_schema(request=s.AttachSerializer, responses={202: console_serializers.TaskSerializer})
    @action(detail=True, methods=["post"])
    def attach(self, request, uuid=None):
        data = valid(s.AttachSerializer, request)
        target = Target(vm=data.get("vm"), docker_host=data.get("docker_host"))
        return accepted(attachments.request_attach(Actor.from_request(request), self.get_object(), target,
                                                   force=data["force"]))

    @extend_schema(request=s.DetachSerializer, responses={202: console_serializers.TaskSerializer})
    @action(detail=True, methods=["post"])
    def detach(self, request, uuid=None):
        data = valid(s.DetachSerializer, request)
        return accepted(attachments.request_detach(Actor.from_request(request), self.get_object(),
                                                   force=data["force"]))

    @extend_schema(responses={202: console_serializers.TaskSerializer})
    def destroy(self, request, uuid=None):
        return accepted(volume_groups.request_delete(Actor.from_request(request), self.get_object()))

    @extend_schema(request=s.ShareSerializer, responses={200: s.VolumeGroupSerializer})
    @action(detail=True, methods=["post"])
    def share(self, request, uuid=None):
        """Admin: let another Docker host's plugin use this Docker volume (a swarm's nodes); see containers/README."""
        return self._change_share(request, shares.share)

    @extend_schema(request=s.ShareSerializer, responses={200: s.VolumeGroupSerializer})
    @action(detail=True, methods=["post"])
    def unshare(self, request, uuid=None):
        """Admin: take a share back."""
        return self._change_share(request, shares.unshare)

    def _change_share(self, request, change) -> Response:
        data = valid(s.ShareSerializer, request)
        group = self.get_object()
        change(Actor.from_request(request), group, data["docker_host"])
        return Response(s.VolumeGroupSerializer(self.get_queryset().get(pk=group.pk)).data)


class DockerHostViewSet(ByUuid, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = DockerHost.objects.select_related("vm").prefetch_related("storage_containers_seen")
    serializer_class = s.DockerHostSerializer
    write_role = ADMIN  # a Docker host holds a token that changes storage: Admins make and remove them
    filterset_class = DockerHostFilterSet
    ordering_fields = ["name", "created_at", "last_contact_at"]

    @extend_schema(request=s.DockerHostCreateSerializer, responses={202: console_serializers.TaskSerializer})
    def create(self, request):
        """A VM from a disk image whose first boot installs Docker and the plugin with the host's own key."""
        data = valid(s.DockerHostCreateSerializer, request)
        task, _ = docker_hosts.request_create(
            Actor.from_request(request), name=data["name"], image=data["image"], vcpus=data["vcpus"],
            memory_bytes=data["memory_bytes"], network=data.get("network"))
        return accepted(task)

    @extend_schema(request=s.DockerHostRegisterSerializer, responses={201: {"type": "object"}})
    @action(detail=False, methods=["post"])
    def register(self, request):
        """Register an existing machine; the answer holds its key, shown once (the plugin's FACET_TOKEN)."""
        data = valid(s.DockerHostRegisterSerializer, request)
        host, key = docker_hosts.register(Actor.from_request(request), data["name"], data["address"])
        return Response({**s.DockerHostSerializer(host).data, "token": key}, status=status.HTTP_201_CREATED)

    @extend_schema(responses={202: console_serializers.TaskSerializer, 204: None})
    def destroy(self, request, uuid=None):
        task = docker_hosts.remove(Actor.from_request(request), self.get_object())
        return accepted(task) if task else Response(status=status.HTTP_204_NO_CONTENT)
