"""Helpers shared by the customization tests."""

import pytest

from console.core.models import Task
from console.models import VM
from console.services import vms
from customization.services.lifecycle import CustomizationRequest

GiB = 1024**3
CLOUD_CONFIG = "#cloud-config\npackages: [nginx]\nruncmd:\n  - echo {{ v1.local_hostname }}\n"
UNATTEND = """<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64">
      <ComputerName>*</ComputerName>
      <RegisteredOrganization>{{ org }}</RegisteredOrganization>
    </component>
  </settings>
</unattend>
"""


def spec(**overrides) -> vms.VMSpec:
    values = {"name": "web-1", "vcpus": 1, "memory_bytes": GiB, "disk_sizes": [GiB]}
    values.update(overrides)
    if "customization" in values:  # the customization app's option of the request
        values["options"] = {"customization": values.pop("customization")}
    return vms.VMSpec(**values)


@pytest.fixture
def create_vm(actor, run_tasks):
    """Create a VM with a customization through the create task; returns the VM."""

    def create(customization: CustomizationRequest | None = None, **overrides) -> VM:
        task = vms.request_create_vm(actor, spec(customization=customization, **overrides))
        run_tasks()
        task.refresh_from_db()
        assert task.status == Task.Status.SUCCEEDED, task.error
        return VM.objects.get(uuid=task.entity_uuid)

    return create
