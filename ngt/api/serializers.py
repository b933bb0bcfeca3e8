from rest_framework import serializers

from ..models import CertificateAuthority, GuestTools


class GuestToolsSerializer(serializers.ModelSerializer):
    vm = serializers.UUIDField(source="vm.uuid", read_only=True)
    vm_name = serializers.CharField(source="vm.name", read_only=True)
    available_version = serializers.CharField(read_only=True)
    upgrade_available = serializers.BooleanField(read_only=True)
    certificate_serial = serializers.CharField(source="certificate.serial", default=None, read_only=True,
                                               allow_null=True)
    certificate_not_after = serializers.DateTimeField(source="certificate.not_after", default=None, read_only=True,
                                                      allow_null=True)

    class Meta:
        model = GuestTools
        fields = ["vm", "vm_name", "enabled", "iso_mounted", "capabilities", "installed_version", "available_version",
                  "upgrade_available", "link_active", "last_seen", "guest_os", "hostname", "ip_addresses",
                  "certificate_serial", "certificate_not_after"]
        read_only_fields = fields


class CapabilitiesSerializer(serializers.Serializer):
    capabilities = serializers.ListField(child=serializers.CharField(), allow_empty=True,
                                         help_text="self-service-restore, vss-snapshot")

    def validate(self, attrs):
        other = sorted(set(self.initial_data) - {"capabilities"})
        if other:
            raise serializers.ValidationError({name: ["only capabilities can be changed"] for name in other})
        return attrs


class MountSerializer(serializers.Serializer):
    config_only = serializers.BooleanField(
        default=False, help_text="The ISO carries only the configuration and certificates (a clone of a template "
                                 "that has the agent installed)")


class CertificateAuthoritySerializer(serializers.ModelSerializer):
    certificate = serializers.CharField(source="certificate_pem", read_only=True, help_text="PEM")

    class Meta:
        model = CertificateAuthority
        fields = ["certificate", "fingerprint_sha256", "not_after"]
        read_only_fields = fields


class GuestToolsOptionSerializer(serializers.Serializer):
    """The `guest_tools` part of a create or clone request."""

    mount = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="Mount a tools ISO with a new certificate pair in the same task (default: when the source of a "
                  "clone has Guest Tools enabled; then it carries the configuration only)")
    capabilities = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True,
                                         default=None, help_text="Default: the source's")
