"""Forms for creating and cloning VMs. Shapes are checked here; the services check the cluster."""

import functools
import re

from django import forms
from django.forms import formset_factory

from console.core.errors import ServiceError
from console.core.registry import registry

from ..models import VM, Host, Image, Network
from ..services.vms import NicSpec, VMSpec

GiB = 1024**3


class HostChoice(forms.ModelChoiceField):
    def label_from_instance(self, host: Host) -> str:
        return f"{host.name} ({host.cpus} CPUs, {host.memory_bytes // GiB} GiB)"


class GiBField(forms.DecimalField):
    """An amount in GiB: any amount may be typed, the browser's arrows step by whole GiB (2 then 3). The
    minimum stays the server's check alone: as the `min` attribute it would be the arrows' base (0.03125
    then 1.03125, ..., 2.00025)."""

    def widget_attrs(self, widget) -> dict:
        attrs = super().widget_attrs(widget)
        attrs.pop("min", None)
        attrs["step"] = "1"
        return attrs


class VMCreateForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="Letters, digits, '.', '_' or '-'")
    hostname = forms.CharField(max_length=63, required=False, help_text="Defaults to the name")
    description = forms.CharField(max_length=255, required=False)
    image = forms.ModelChoiceField(Image.objects.all(), required=False, empty_label="No image (empty disks)",
                                   help_text="A disk image is copied into disk 0; an ISO goes in the CD-ROM")
    host = HostChoice(Host.objects.filter(enabled=True), required=False, empty_label="Automatic placement")
    vcpus = forms.IntegerField(label="vCPUs", initial=2)  # its range is the service's to check
    memory_gib = GiBField(label="Memory (GiB)", min_value=0.03125, max_digits=8, decimal_places=3, initial=2)
    guest_os = forms.ChoiceField(label="Guest OS", choices=VM.GuestOS.choices)
    is_template = forms.BooleanField(label="Make it a template", required=False)
    power_on = forms.BooleanField(label="Power on once created", required=False)


class DiskForm(forms.Form):
    size_gib = GiBField(label="Size (GiB)", min_value=0.001, max_digits=9, decimal_places=3, required=False)


class NicForm(forms.Form):
    IP_MODES = [("dhcp", "DHCP (no static IP)"), ("auto", "Next free address of the pool"),
                ("static", "This address")]
    network = forms.ModelChoiceField(Network.objects.all(), required=False, empty_label="No NIC")
    ip_mode = forms.ChoiceField(label="IP", choices=IP_MODES, initial="dhcp", required=False)
    address = forms.GenericIPAddressField(required=False)

    def clean(self):
        data = super().clean()
        if data.get("network") and data.get("ip_mode") == "static" and not data.get("address"):
            self.add_error("address", "Give the static address, or choose another IP mode.")
        return data


DiskFormSet = formset_factory(DiskForm, extra=3, max_num=3)
NicFormSet = formset_factory(NicForm, extra=2, max_num=2)


@functools.cache
def with_options(form_class: type[forms.Form]) -> type[forms.Form]:
    """The create or clone form with the fields of every app's VM option mixed in (a customization
    script's, named `customization_*`), made once they have all registered."""
    return type(form_class.__name__, (form_class, *(o.form for o in registry.vm_options.values())), {})


def options_of(form: forms.Form) -> dict:
    return {name: option.from_form(form) for name, option in registry.vm_options.items()}


def vm_spec(form: VMCreateForm, disks, nics) -> VMSpec:
    data = form.cleaned_data
    return VMSpec(
        name=data["name"], hostname=data["hostname"], description=data["description"], vcpus=data["vcpus"],
        memory_bytes=int(data["memory_gib"] * GiB), image=data["image"], host=data["host"],
        guest_os=data["guest_os"], is_template=data["is_template"], power_on=data["power_on"],
        disk_sizes=[int(d.cleaned_data["size_gib"] * GiB) for d in disks if d.cleaned_data.get("size_gib")],
        nics=[NicSpec(network=n.cleaned_data["network"], ip=_ip(n.cleaned_data))
              for n in nics if n.cleaned_data.get("network")],
        options=options_of(form),
    )


def _ip(nic: dict) -> str | None:
    """The NIC's `ip` as the service takes it: None for DHCP, "auto", or the static address."""
    mode = nic.get("ip_mode") or "dhcp"
    if mode == "static":
        return nic.get("address")
    return "auto" if mode == "auto" else None


# Service error keys -> (form name, form index or None, field)
FIELD_OF_KEY = {"memory_bytes": "memory_gib", "vcpus": "vcpus", "name": "name", "hostname": "hostname",
                "image": "image", "host": "host", "guest_os": "guest_os", "power_on": "power_on"}
INDEXED_KEY = re.compile(r"^(disks|nics)\[(\d+)\]\.(\w+)$")
INDEXED_FIELD = {"size_bytes": "size_gib", "ip": "address", "mac": "address", "network": "network"}


def _field_of(key: str) -> str | None:
    """The form field a service error key is about: an option's `customization.kind` is `customization_kind`."""
    return FIELD_OF_KEY.get(key) or key.replace(".", "_")


def show_service_error(error: ServiceError, form: forms.Form, disks=None, nics=None) -> None:
    """Put each message of a service error beside the field it is about (else at the top of the form)."""
    groups = {"disks": disks, "nics": nics}
    for key, problems in error.errors.items():
        match = INDEXED_KEY.match(key)
        for problem in problems:
            if match and groups.get(match[1]) is not None:
                # Indexes count filled rows; map them back to the row of the formset.
                rows = [f for f in groups[match[1]] if f.cleaned_data.get("size_gib" if match[1] == "disks"
                                                                           else "network")]
                index = int(match[2])
                target = rows[index] if index < len(rows) else form
                target.add_error(INDEXED_FIELD.get(match[3]) if target is not form else None, problem)
            elif (field := _field_of(key)) in form.fields:
                form.add_error(field, problem)
            else:
                form.add_error(None, problem)


class CloneForm(forms.Form):
    name = forms.CharField(max_length=80)
    hostname = forms.CharField(max_length=63, required=False, help_text="Defaults to the name")
    host = HostChoice(Host.objects.filter(enabled=True), required=False, empty_label="Automatic placement")
    linked = forms.BooleanField(label="Linked clone (disks start as overlays of the source)", required=False)
    power_on = forms.BooleanField(label="Power on once cloned", required=False)


def clone_options(form: CloneForm) -> dict:
    """The keyword arguments of `request_clone` that the clone form gives."""
    data = form.cleaned_data
    return {"host": data["host"], "linked": data["linked"], "power_on": data["power_on"],
            "hostname": data["hostname"], "options": options_of(form)}
