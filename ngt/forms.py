"""The Guest Tools section of the Create VM and Clone forms (fields named `guest_tools_*`)."""

from django import forms

from .models import CAPABILITIES, CAPABILITY_LABELS


class GuestToolsFields(forms.Form):
    guest_tools_mount = forms.ChoiceField(
        label="Guest Tools", required=False, choices=[
            ("", "As the source: a new identity when it has Guest Tools"),
            ("yes", "Mount a tools ISO with a new certificate"),
            ("no", "None")])
    guest_tools_capabilities = forms.MultipleChoiceField(
        label="Capabilities", required=False, choices=[(name, CAPABILITY_LABELS[name]) for name in CAPABILITIES],
        widget=forms.CheckboxSelectMultiple, help_text="Default: the source's")
