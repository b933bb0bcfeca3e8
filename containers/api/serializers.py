from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from console.api.serializers import by_uuid
from console.models import VM, Image, Network, StorageContainer

from ..models import DockerHost, VolumeGroup, VolumeGroupDisk


class VolumeGroupDiskSerializer(serializers.ModelSerializer):
    class Meta:
        model = VolumeGroupDisk
        fields = ["index", "size_bytes", "file_name", "serial"]


@extend_schema_field({"type": "object", "nullable": True, "properties": {
    "type": {"type": "string", "enum": ["vm", "docker-host"]}, "uuid": {"type": "string", "format": "uuid"},
    "name": {"type": "string"}, "state": {"type": "string"}}})
class AttachmentField(serializers.Field):
    """Where the group is attached: `{"type": "vm"|"docker-host", "uuid", "name", "state"}`, or null."""

    def to_representation(self, group: VolumeGroup):
        attachment = getattr(group, "attachment", None)
        if attachment is None:
            return None
        target = attachment.docker_host or attachment.vm
        return {"type": "docker-host" if attachment.docker_host_id else "vm", "uuid": str(target.uuid),
                "name": target.name, "state": attachment.state}


class VolumeGroupSerializer(serializers.ModelSerializer):
    container = serializers.SlugRelatedField(source="storage_container", slug_field="uuid", read_only=True)
    container_name = serializers.CharField(source="storage_container.name", read_only=True)
    disks = VolumeGroupDiskSerializer(many=True, read_only=True)
    size_bytes = serializers.IntegerField(read_only=True)
    attachment = AttachmentField(source="*", read_only=True)
    created_by_host = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True,
                                                   help_text="The Docker host whose plugin created it")
    shared_with = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True,
                                               help_text="Docker hosts an Admin shared it with")

    class Meta:
        model = VolumeGroup
        fields = ["uuid", "name", "description", "container", "container_name", "state", "docker_volume", "fstype",
                  "size_bytes", "used_bytes", "mounts", "disks", "attachment", "created_by_host", "shared_with",
                  "created_at"]


class VolumeGroupCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    size_bytes = serializers.IntegerField(min_value=1, help_text="Size of each disk")
    disk_count = serializers.IntegerField(min_value=1, default=1)
    container = by_uuid(StorageContainer.objects.all(), required=False, allow_null=True)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class GrowSerializer(serializers.Serializer):
    size_bytes = serializers.IntegerField(min_value=1, help_text=(
        "The disk's new, larger size. A VM sees it at its next attach or power-on; a Docker volume's filesystem "
        "is grown by the plugin (the task's message says when)"))
    index = serializers.IntegerField(min_value=0, default=0)


class AttachSerializer(serializers.Serializer):
    vm = by_uuid(VM.objects.select_related("host"), required=False, allow_null=True)
    docker_host = by_uuid(DockerHost.objects.select_related("vm__host"), required=False, allow_null=True)
    force = serializers.BooleanField(default=False, help_text="Move it here if it is attached elsewhere")

    def validate(self, attrs):
        if bool(attrs.get("vm")) == bool(attrs.get("docker_host")):
            raise serializers.ValidationError({"vm": "give either 'vm' or 'docker_host'"})
        return attrs


class ShareSerializer(serializers.Serializer):
    docker_host = by_uuid(DockerHost.objects.all())


class DetachSerializer(serializers.Serializer):
    force = serializers.BooleanField(default=False, help_text="Admin: detach from a host that no longer answers")


class DockerHostSerializer(serializers.ModelSerializer):
    vm = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    containers_seen = serializers.SlugRelatedField(source="storage_containers_seen", slug_field="name", many=True,
                                                    read_only=True)

    class Meta:
        model = DockerHost
        fields = ["uuid", "name", "kind", "vm", "address", "state", "problem", "key_hint", "containers_seen",
                  "docker_version", "plugin_version", "last_contact_at", "created_at"]


class DockerHostRegisterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    address = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class DockerHostCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=63)
    image = by_uuid(Image.objects.select_related("storage_container", "cluster").filter(kind=Image.Kind.DISK))
    vcpus = serializers.IntegerField(min_value=1, max_value=256, default=2)
    memory_bytes = serializers.IntegerField(min_value=1, default=2 * 1024**3)
    network = by_uuid(Network.objects.all(), required=False, allow_null=True)
