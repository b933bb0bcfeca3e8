"""The VM edit form. Shapes are checked here; the service checks the host's limits and the version."""

from django import forms

from ..services.vm_edit import BOOT_DEVICES

GiB = 1024**3


class VMEditForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="Letters, digits, '.', '_' or '-'")
    description = forms.CharField(max_length=255, required=False)
    vcpus = forms.IntegerField(label="vCPUs", help_text="Hot-added up to the VM's maximum while it runs")
    memory_gib = forms.DecimalField(label="Memory (GiB)", max_digits=8, decimal_places=3,
                                    help_text="Through the balloon up to the VM's maximum while it runs")
    boot_order = forms.CharField(max_length=32, help_text=f"In order, comma-separated: {', '.join(BOOT_DEVICES)}")
    high_availability = forms.BooleanField(
        label="High availability", required=False,
        help_text="If its host fails, the VM is started on another host that reaches its disks")
    version = forms.IntegerField(widget=forms.HiddenInput)

    def changes(self) -> dict:
        data = self.cleaned_data
        return {"name": data["name"], "description": data["description"], "vcpus": data["vcpus"],
                "memory_bytes": int(data["memory_gib"] * GiB), "boot_order": data["boot_order"].replace(" ", ""),
                "high_availability": data["high_availability"]}


# Service error keys -> form fields.
FIELD_OF_KEY = {"memory_bytes": "memory_gib", "If-Match": "version"}
