"""Forms: the customization section of the Create VM and Clone forms, the library's forms, and the
guided Sysprep generator."""

from django import forms

from .models import CustomizationScript, Datasource, Kind
from .services.content import size_limit
from .services.lifecycle import CustomizationRequest
from .services.sysprep import Answers

SOURCES = [("content", "Type or paste (or load a file)"), ("script", "Saved script"),
           ("storage_path", "File in a storage container")]


def parse_key_values(text: str) -> dict[str, str]:
    """`key=value` lines (blank lines and `#` comments skipped) as a dict; ValueError on a bad line."""
    values = {}
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        key, equals, value = entry.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"line {number}: write key=value")
        values[key.strip()] = value.strip()
    return values


class CustomizationFields(forms.Form):
    """Fields every form that makes a VM shares, as `customization_*`."""

    customization_kind = forms.ChoiceField(
        label="Customization", required=False,
        choices=[("", "None"), (Kind.CLOUD_INIT, "cloud-init (Linux)"), (Kind.SYSPREP, "Sysprep (Windows)")])
    customization_source = forms.ChoiceField(label="Script source", choices=SOURCES, initial="content",
                                             required=False)
    customization_content = forms.CharField(
        label="Script", required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "code"}))
    customization_script = forms.ModelChoiceField(CustomizationScript.objects.all(), label="Saved script",
                                                  required=False, empty_label="Choose a script")
    customization_storage_path = forms.CharField(label="Storage path", required=False, max_length=1024,
                                                 help_text="facet://CONTAINER/path/to/file")
    customization_key_values = forms.CharField(
        label="Key-values", required=False, widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="key=value per line: {{ key }} in unattend.xml; {{ ds.meta_data.meta.key }} in cloud-init "
                  "(with ## template: jinja)")
    customization_datasource = forms.ChoiceField(
        label="Datasource", required=False, initial=Datasource.CONFIG_DRIVE,
        choices=[(Datasource.CONFIG_DRIVE, Datasource.CONFIG_DRIVE.label),
                 (Datasource.NOCLOUD, Datasource.NOCLOUD.label)], help_text="cloud-init only")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.customization_limit = size_limit()
        self.fields["customization_content"].help_text = f"At most {self.customization_limit // 1024} KiB."

    def clean(self):
        data = super().clean()
        if not data.get("customization_kind"):
            return data
        try:
            data["customization_key_values"] = parse_key_values(data.get("customization_key_values") or "")
        except ValueError as exc:
            self.add_error("customization_key_values", str(exc))
        source = data.get("customization_source") or "content"
        if not data.get(f"customization_{source}"):
            self.add_error(f"customization_{source}", "Give the script, or choose another source.")
        return data

    def customization_request(self) -> CustomizationRequest | None:
        data = self.cleaned_data
        kind = data.get("customization_kind")
        if not kind:
            return None
        source = data.get("customization_source") or "content"
        return CustomizationRequest(
            kind=kind, key_values=data.get("customization_key_values") or {},
            datasource=(data.get("customization_datasource") or "") if kind == Kind.CLOUD_INIT else "",
            **{source: data[f"customization_{source}"]})


class ScriptForm(forms.ModelForm):
    class Meta:
        model = CustomizationScript
        fields = ["name", "kind", "description", "content"]
        widgets = {"content": forms.Textarea(attrs={"rows": 14, "spellcheck": "false", "class": "code"})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["content"].strip = False


class UploadForm(forms.Form):
    name = forms.CharField(max_length=63)
    kind = forms.ChoiceField(choices=Kind.choices)
    description = forms.CharField(max_length=255, required=False)
    file = forms.FileField()


class SysprepForm(forms.Form):
    """The guided mode: an unattend.xml from a few answers, saved in the library."""

    name = forms.CharField(max_length=63, help_text="The library script's name")
    install_type = forms.ChoiceField(choices=[("prepared", "Prepared (a sysprepped image)"),
                                              ("fresh", "Fresh (from installation media)")])
    computer_name = forms.CharField(max_length=15, initial="*", help_text="* : from the VM's hostname")
    admin_password = forms.CharField(required=False, widget=forms.PasswordInput(render_value=True))
    time_zone = forms.CharField(initial="UTC", max_length=64)
    locale = forms.CharField(initial="en-US", max_length=16)
    product_key = forms.CharField(required=False, max_length=29)
    organization = forms.CharField(required=False, max_length=64)
    first_logon_commands = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                           help_text="One command per line, run in order at first logon")

    def answers(self) -> Answers:
        data = self.cleaned_data
        commands = [c.strip() for c in data["first_logon_commands"].splitlines() if c.strip()]
        return Answers(computer_name=data["computer_name"], admin_password=data["admin_password"],
                       time_zone=data["time_zone"], locale=data["locale"], product_key=data["product_key"],
                       organization=data["organization"], first_logon_commands=commands,
                       install_type=data["install_type"])
