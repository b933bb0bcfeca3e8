from django import forms

from console.models import Image, Network, StorageContainer

GiB = 1024**3


class VolumeGroupForm(forms.Form):
    name = forms.CharField(max_length=63)
    size_gib = forms.IntegerField(label="Size of each disk (GiB)", min_value=1, initial=10)
    disk_count = forms.IntegerField(label="Disks", min_value=1, max_value=16, initial=1)
    container = forms.ModelChoiceField(StorageContainer.objects.all(), empty_label=None, to_field_name="uuid")
    description = forms.CharField(max_length=255, required=False)


class GrowForm(forms.Form):
    index = forms.IntegerField(min_value=0, initial=0, label="Disk")
    size_gib = forms.IntegerField(min_value=1, label="New size (GiB)")


class RegisterForm(forms.Form):
    name = forms.CharField(max_length=63)
    address = forms.CharField(max_length=255, required=False, help_text="Where people reach it (free text)")


class DockerHostCreateForm(forms.Form):
    name = forms.CharField(max_length=63)
    image = forms.ModelChoiceField(Image.objects.filter(kind=Image.Kind.DISK), to_field_name="uuid",
                                   help_text="A Debian or Ubuntu cloud image")
    vcpus = forms.IntegerField(min_value=1, max_value=256, initial=2, label="vCPUs")
    memory_gib = forms.IntegerField(min_value=1, initial=2, label="Memory (GiB)")
    network = forms.ModelChoiceField(Network.objects.all(), to_field_name="uuid", required=False,
                                     empty_label="The cluster's first network",
                                     help_text="Its volume plugin reaches the console over it")
