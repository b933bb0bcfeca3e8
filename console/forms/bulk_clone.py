"""The bulk clone wizard's form: the fields of every step in one form (a step shows its own and carries the
others as hidden inputs), the steps, the request a step has given so far, and where a service error goes.
Shapes are checked here; `console.services.bulk_clone` checks everything else."""

import functools
import re
from dataclasses import dataclass

from django import forms

from console.core.errors import ServiceError
from console.core.registry import registry

from ..models import VM, Host
from ..services.bulk_clone import BulkCloneRequest
from .vms import HostChoice

CSV_FILE_LIMIT = 1024 * 1024  # a row per clone, 1,000 clones: far less than this


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    fields: tuple[str, ...] = ()
    option: str = ""  # the VM option (registry.vm_options) the step gives, drawn by the option's template
    per_clone: bool = False  # the step also takes the per-clone table


PER_CLONE_FIELDS = ("per_clone_csv", "per_clone_file")


@functools.cache
def wizard_steps() -> tuple[Step, ...]:
    """Source, names, placement, a step per VM option (the per-clone table on the first option that takes
    per-clone values, else with the names), power and disks, review. Made once the apps have registered."""
    options = sorted(registry.vm_options.items(), key=lambda item: item[1].order)
    table_at = next((name for name, option in options if option.per_clone), "")
    option_steps = tuple(Step(f"option-{name}", option.label or name.replace("_", " ").capitalize(),
                              tuple(option.form.base_fields) + (PER_CLONE_FIELDS if name == table_at else ()),
                              option=name, per_clone=name == table_at) for name, option in options)
    names_fields = ("count", "name_pattern", "start_index") + (() if table_at else PER_CLONE_FIELDS)
    return (Step("source", "Source", ("source",)),
            Step("names", "Count and names", names_fields, per_clone=not table_at),
            Step("placement", "Placement", ("placement", "host")),
            *option_steps,
            Step("power", "Power and disks", ("power_on", "linked")),
            Step("review", "Review"))


def step_index(key: str) -> int:
    return [step.key for step in wizard_steps()].index(key)


def step_of_field(field: str) -> int | None:
    return next((i for i, step in enumerate(wizard_steps()) if field in step.fields), None)


class SourceChoice(forms.ModelChoiceField):
    def label_from_instance(self, vm: VM) -> str:
        return f"{vm.name} ({'template' if vm.is_template else 'VM'})"


class BulkCloneFields(forms.Form):
    source = SourceChoice(VM.objects.all(), to_field_name="uuid", label="Source", error_messages={
        "required": "Choose the template or VM to clone.",
        "invalid_choice": "That VM no longer exists; choose another."})
    count = forms.IntegerField(label="Number of VMs", initial=3)  # its range is the service's to check
    name_pattern = forms.CharField(label="Name pattern", max_length=200, help_text=(
        "{n} is each VM's number; {n:03} pads it to three digits: web-{n:03} gives web-001, web-002…"))
    start_index = forms.IntegerField(label="Start index", initial=1, help_text="The number of the first VM")
    placement = forms.ChoiceField(label="Placement", initial="spread", widget=forms.RadioSelect, choices=[
        ("spread", "Spread over the hosts that take VMs, by free memory"), ("host", "All on one host")])
    host = HostChoice(Host.objects.filter(enabled=True), to_field_name="uuid", required=False,
                      empty_label="Choose the host", label="Host")
    per_clone_csv = forms.CharField(
        label="Per-clone values", required=False, strip=False,
        widget=forms.Textarea(attrs={"rows": 7, "spellcheck": "false", "class": "code"}),
        help_text="Paste a table: a header line name,hostname,ip,KEY… then one row per VM, in order. An empty "
                  "cell keeps the default (the pattern's name, a hostname from the name, the next free address); "
                  "other columns are the script's key-values.")
    per_clone_file = forms.FileField(label="Or upload a CSV file", required=False)
    power_on = forms.BooleanField(label="Power on once cloned", required=False)
    linked = forms.ChoiceField(label="Disks", initial="full", widget=forms.RadioSelect, choices=[
        ("full", "Full clones: each VM gets a copy of the source's disks"),
        ("linked", "Linked clones: each VM's disks start as overlays of the source's (faster and smaller; the "
                   "source must stay powered off)")])

    def __init__(self, data=None, files=None, **kwargs) -> None:
        """An uploaded CSV file becomes the pasted table, so that the next steps carry it as text."""
        self.file_error = ""
        upload = (files or {}).get("per_clone_file")
        if upload is not None and data is not None:
            data = data.copy()
            if upload.size > CSV_FILE_LIMIT:
                self.file_error = f"The file is over {CSV_FILE_LIMIT // 1024} KiB; a row per VM is far less."
            else:
                try:
                    data["per_clone_csv"] = upload.read().decode("utf-8-sig")
                except UnicodeDecodeError:
                    self.file_error = "The file is not UTF-8 text; save the table as CSV (UTF-8)."
        super().__init__(data, files, **kwargs)

    def clean(self):
        data = super().clean()
        if self.file_error:
            self.add_error("per_clone_file", self.file_error)
        if data.get("placement") == "host" and not data.get("host"):
            self.add_error("host", "Choose the host, or spread the VMs over the hosts.")
        return data


@functools.cache
def wizard_form() -> type[forms.Form]:
    """The wizard's fields with every VM option's fields mixed in, as on Create VM."""
    return type("BulkCloneForm", (BulkCloneFields, *(o.form for o in registry.vm_options.values())), {})


# --- the request, as far as the steps have given it -------------------------------------------------------
def request_until(form: forms.Form, last: int) -> BulkCloneRequest:
    """The request of steps 0..`last`; later steps keep their defaults (the service's own). `form` is valid
    for the fields of those steps."""
    steps = wizard_steps()
    data = form.cleaned_data
    given = {field for step in steps[:last + 1] for field in step.fields}

    def value(field: str, default):
        return data[field] if field in given and data.get(field) not in (None, "") else default

    source = data["source"]
    host = value("host", None)
    placement = {"host": host} if value("placement", "spread") == "host" and host else {"policy": "spread"}
    options = {step.option: registry.vm_options[step.option].from_form(form)
               for step in steps[:last + 1] if step.option}
    return BulkCloneRequest(
        source=source, count=value("count", 1), name_pattern=value("name_pattern", f"{source.name}-{{n}}"),
        start_index=value("start_index", 1), placement=placement, linked=value("linked", "full") == "linked",
        options={name: options.get(name) for name in registry.vm_options}, per_clone_csv=value("per_clone_csv", None),
        power_on=value("power_on", False))


# --- where an error goes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    step: int
    field: str | None  # None: at the top of its step
    message: str


OPTION_KEY = re.compile(r"^(\w+)")


def shape_problems(form: forms.Form, current: int) -> list[Problem]:
    """The form's own errors (a count that is no number...), each at its field's step."""
    return [Problem(_step(field, current), None if field == "__all__" else field, message)
            for field, messages in form.errors.items() for message in messages]


def service_problems(form: forms.Form, error: ServiceError, current: int) -> list[Problem]:
    """Each message of a service error at the field it is about: `per_clone_csv` (with its line and
    column), `placement`, an option's `customization.content` at `customization_content`; else at the top
    of the option's step, else of the current step."""
    problems = []
    for key, messages in error.errors.items():
        field = _field_of(form, key)
        if field is not None:
            step = _step(field, current)
        else:
            option = OPTION_KEY.match(key)[1] if OPTION_KEY.match(key) else ""
            step = next((i for i, s in enumerate(wizard_steps()) if s.option and s.option == option), current)
        problems += [Problem(step, field, message) for message in messages]
    return problems


def _step(field: str, current: int) -> int:
    found = step_of_field(field)
    return current if found is None else found


def _field_of(form: forms.Form, key: str) -> str | None:
    if key.startswith("per_clone"):
        return "per_clone_csv"
    if key in ("vm", "source"):  # the source is being created or deleted
        return "source"
    return next((name for name in (key, key.replace(".", "_")) if name in form.fields), None)


def show(form: forms.Form, problems: list[Problem]) -> None:
    """Put a service's problems on the form, beside their fields."""
    for problem in problems:
        form.add_error(problem.field, problem.message)


CSV_LINE = re.compile(r"\bline (\d+)\b")


def csv_lines(form: forms.Form) -> list[tuple[int, str, bool]]:
    """The pasted table's lines (number, text, whether an error names it), to show a bad row in place."""
    if "per_clone_csv" not in form.errors:
        return []
    bad = {int(number) for message in form.errors["per_clone_csv"] for number in CSV_LINE.findall(message)}
    text = form.data.get("per_clone_csv", "")
    return [(number, line, number in bad) for number, line in enumerate(text.splitlines(), start=1)] if bad else []
