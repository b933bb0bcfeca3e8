from django import forms
from django.contrib.auth.models import User

from console.core.access import ROLES
from console.core.errors import InvalidRequest

from ..models import Network
from ..services.networks import check_addressing


class NetworkForm(forms.ModelForm):
    class Meta:
        model = Network
        fields = ["name", "vlan", "cidr", "gateway", "dns_servers", "pool_start", "pool_end"]
        labels = {"vlan": "VLAN", "cidr": "Subnet (CIDR)", "dns_servers": "DNS servers"}

    def clean(self):
        data = super().clean()
        if "cidr" in data:
            try:
                data["cidr"] = check_addressing(data["cidr"], data.get("gateway"), data.get("pool_start"),
                                                data.get("pool_end"), data.get("dns_servers", ""))
            except InvalidRequest as error:
                for field, problems in error.errors.items():
                    for problem in problems:
                        self.add_error(field if field in self.fields else None, problem)
        return data


class TokenForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="What the token is for, e.g. 'laptop' or 'backup-job'")


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=[(r, r) for r in ROLES], initial="Viewer")
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)

    def clean_username(self):
        username = self.cleaned_data["username"]
        if User.objects.filter(username=username).exists():
            raise forms.ValidationError("A user with this name exists.")
        return username


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=[(r, r) for r in ROLES])
