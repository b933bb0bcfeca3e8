import base64
import binascii

from rest_framework import serializers

from ..models import CustomizationScript, Datasource, Kind, VMCustomization
from ..services.lifecycle import CustomizationRequest


class ScriptMetadataSerializer(serializers.ModelSerializer):
    """What a Viewer sees of a saved script: never its content, which may hold passwords."""

    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = CustomizationScript
        fields = ["uuid", "name", "description", "kind", "format", "owner", "usage_count", "created_at",
                  "updated_at"]
        read_only_fields = ["uuid", "format", "owner", "usage_count", "created_at", "updated_at"]


class ScriptSerializer(ScriptMetadataSerializer):
    class Meta(ScriptMetadataSerializer.Meta):
        fields = [*ScriptMetadataSerializer.Meta.fields, "content"]
        extra_kwargs = {"content": {"trim_whitespace": False}}


class ContentSerializer(serializers.Serializer):
    """Script text, or its bytes in base64 (gzip, or text to be checked for its encoding)."""

    content = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    content_base64 = serializers.CharField(required=False, help_text="The script's bytes, base64-encoded")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if "content_base64" in attrs:
            try:
                attrs["content"] = base64.b64decode(attrs.pop("content_base64"), validate=True)
            except (binascii.Error, ValueError):
                raise serializers.ValidationError({"content_base64": ["not valid base64"]}) from None
        return attrs


class ValidateSerializer(ContentSerializer):
    kind = serializers.ChoiceField(choices=Kind.choices, default=Kind.CLOUD_INIT)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if "content" not in attrs:
            raise serializers.ValidationError({"content": ["give content or content_base64"]})
        return attrs


class SysprepAnswersSerializer(serializers.Serializer):
    """The guided mode's fields; the answer is an unattend.xml to save or pass as content."""

    install_type = serializers.ChoiceField(choices=["prepared", "fresh"], default="prepared")
    computer_name = serializers.CharField(max_length=15, default="*", help_text="*: from the VM's hostname")
    admin_password = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=False)
    time_zone = serializers.CharField(max_length=64, default="UTC")
    locale = serializers.CharField(max_length=16, default="en-US")
    product_key = serializers.CharField(max_length=29, required=False, default="", allow_blank=True)
    organization = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    first_logon_commands = serializers.ListField(child=serializers.CharField(max_length=1024), required=False,
                                                 default=list, max_length=50)


class ProblemSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    column = serializers.IntegerField()
    severity = serializers.ChoiceField(choices=["error", "warning", "info"])
    message = serializers.CharField()


class ValidationResultSerializer(serializers.Serializer):
    format = serializers.CharField()
    valid = serializers.BooleanField()
    problems = ProblemSerializer(many=True)


class CustomizationSpecSerializer(ContentSerializer):
    """The `customization` object of a VM create or clone: one of content, content_base64, script or
    storage_path."""

    kind = serializers.ChoiceField(choices=Kind.choices, required=False, help_text="Omit: Sysprep for Windows")
    script = serializers.CharField(required=False, help_text="A saved script's uuid (or name)")
    storage_path = serializers.CharField(required=False, help_text="facet://CONTAINER/path/to/file")
    key_values = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=1024),
                                       required=False, default=dict)
    datasource = serializers.ChoiceField(choices=Datasource.choices, required=False,
                                         help_text="config-drive (default for cloud-init) or nocloud")



def customization_request(data: dict | None) -> CustomizationRequest | None:
    """A create or clone payload's validated `customization` object as the service takes it."""
    if not data:
        return None
    return CustomizationRequest(kind=data.get("kind", ""), content=data.get("content"), script=data.get("script"),
                                storage_path=data.get("storage_path", ""), key_values=data.get("key_values", {}),
                                datasource=data.get("datasource", ""))


class VMCustomizationSerializer(serializers.ModelSerializer):
    """Give it `may_read_secrets` in its context: below Operator, the key-values' values are masked."""

    vm = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    script = serializers.SlugRelatedField(slug_field="uuid", read_only=True, allow_null=True)
    key_values = serializers.SerializerMethodField()

    class Meta:
        model = VMCustomization
        fields = ["vm", "status", "message", "kind", "datasource", "format", "source", "script", "key_values",
                  "media_files", "cdrom_slot", "created_at", "updated_at", "reported_at"]

    def get_key_values(self, customization: VMCustomization) -> dict[str, str]:
        return customization.key_values_for(self.context.get("may_read_secrets", False))
