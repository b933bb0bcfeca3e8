"""`/api/v1/vms/{uuid}/snapshots/`: a VM's snapshots (a flat list in tree order, each naming its parent), taken,
reverted and deleted through tasks."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from console.core.actors import Actor
from console.core.api.lookups import UUID_PATTERN

from ..models import VM, Snapshot
from ..services import snapshots
from .serializers import TaskSerializer
from .views import accepted, valid


class SnapshotSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    depth = serializers.SerializerMethodField(help_text="Its place in the tree: 0 for a snapshot with no parent")

    class Meta:
        model = Snapshot
        fields = ["uuid", "name", "description", "parent", "depth", "state", "is_current", "consistent",
                  "consistency_note", "size_bytes", "created_by", "created_at"]

    def get_depth(self, snapshot: Snapshot) -> int:
        return self.context.get("depths", {}).get(snapshot.pk, 0)


class SnapshotCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)  # the service says what a name may hold
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class RevertSerializer(serializers.Serializer):
    confirm = serializers.BooleanField(default=False, help_text="Required when the VM runs: its running state "
                                                                "(memory) is lost")


class SnapshotViewSet(viewsets.ViewSet):
    lookup_field = "snapshot"
    lookup_value_regex = UUID_PATTERN

    def _vm(self, uuid) -> VM:
        return get_object_or_404(VM.objects.select_related("host", "cluster"), uuid=uuid)

    def _snapshot(self, uuid, snapshot) -> Snapshot:
        return get_object_or_404(Snapshot.objects.select_related("vm__host", "vm__cluster"), vm__uuid=uuid,
                                 uuid=snapshot)

    @extend_schema(responses={200: SnapshotSerializer(many=True)})
    def list(self, request, uuid=None):
        ordered = snapshots.tree(self._vm(uuid))
        depths = {snapshot.pk: depth for snapshot, depth in ordered}
        return Response(SnapshotSerializer([s for s, _ in ordered], many=True, context={"depths": depths}).data)

    @extend_schema(responses={200: SnapshotSerializer})
    def retrieve(self, request, uuid=None, snapshot=None):
        return Response(SnapshotSerializer(self._snapshot(uuid, snapshot)).data)

    @extend_schema(request=SnapshotCreateSerializer, responses={202: TaskSerializer})
    def create(self, request, uuid=None):
        data = valid(SnapshotCreateSerializer, request)
        return accepted(snapshots.request_create(Actor.from_request(request), self._vm(uuid), data["name"],
                                                 data["description"]))

    @extend_schema(responses={202: TaskSerializer})
    def destroy(self, request, uuid=None, snapshot=None):
        return accepted(snapshots.request_delete(Actor.from_request(request), self._snapshot(uuid, snapshot)))

    @extend_schema(request=RevertSerializer, responses={202: TaskSerializer})
    @action(detail=True, methods=["post"])
    def revert(self, request, uuid=None, snapshot=None):
        data = valid(RevertSerializer, request)
        return accepted(snapshots.request_revert(Actor.from_request(request), self._snapshot(uuid, snapshot),
                                                 confirm=data["confirm"]))
