"""The day-2 verbs of the `facet` CLI against a live console: each as an administrator types it."""

import pytest

from console.core.models import Task
from console.models import VM, Host, Network
from tests.cli.test_cli import facet, isolated, world  # noqa: F401  (fixtures)

GiB, MiB = 1024**3, 1024**2


def test_vm_update_disk_and_nic_verbs_make_their_tasks(facet, world):  # noqa: F811
    db = VM.objects.get(name="db-01")
    code, out, err = facet("vm", "update", f"vm-id={db.uuid}", "vcpus=6", "memory=12G", "boot-order=cdrom,hd")
    assert code == 0, err
    task = Task.objects.get(kind="vm.update")
    assert (task.params["vcpus"], task.params["memory_bytes"]) == (6, 12 * GiB)
    db.refresh_from_db()
    assert db.boot_order == "cdrom,hd"
    code, out, err = facet("vm", "update", f"vm-id={db.uuid}", "vcpus=64")
    assert code != 0 and "vcpus" in err and "more than host cli-host has (16)" in err
    assert facet("vm", "disk-add", f"vm-id={db.uuid}", "size=10G")[0] == 0
    assert Task.objects.filter(kind="vm.disk.add").exists() and db.disks.get().size_bytes == 10 * GiB
    lan = Network.objects.get(name="lan")
    assert facet("vm", "nic-add", f"vm-id={db.uuid}", f"network={lan.uuid}", "ip=auto")[0] == 0
    assert db.nics.get().ip == "10.20.0.10"
    assert facet("vm", "pause", f"vm-id={VM.objects.get(name='web-01').uuid}")[0] == 0
    assert Task.objects.filter(kind="vm.power", params__action="pause").exists()


@pytest.mark.parametrize(("url", "words"), [("ftp://example.com/x.img", "http:// or https://"),
                                            ("http://127.0.0.1/x.img", "loopback")])
def test_image_import_refuses_what_it_must_naming_the_key(facet, world, url, words):  # noqa: F811
    code, out, err = facet("image", "import", f"url={url}")
    assert code != 0 and "url" in err and words in err
    assert not Task.objects.filter(kind="image.import").exists()


def test_host_unmanaged_lists_the_hosts_foreign_domains(facet, world):  # noqa: F811
    from console.core.models import SimDomain

    SimDomain.objects.create(uuid="0e6a2f5c-3a2b-4f8e-8d7e-111111111111", host_name="cli-host", power_state="off",
                             definition={"name": "legacy", "vcpus": 1, "memory_bytes": 256 * MiB})
    code, out, err = facet("host", "unmanaged", f"host-id={Host.objects.get().uuid}")
    assert code == 0, err
    assert "legacy" in out and "yes" in out


def test_vm_update_marks_a_vm_for_high_availability_and_vm_get_shows_it(facet, world):  # noqa: F811
    db = VM.objects.get(name="db-01")
    code, out, err = facet("vm", "update", f"vm-id={db.uuid}", "high-availability=true")
    assert code == 0, err
    db.refresh_from_db()
    assert db.high_availability and Task.objects.get(kind="vm.update").params["hardware"] == []
    code, out, err = facet("vm", "get", f"vm-id={db.uuid}")
    assert code == 0, err
    assert "HA:          yes: restarted elsewhere if its host fails" in out
    code, out, err = facet("vm", "update", f"vm-id={db.uuid}", "high-availability=maybe")
    assert code == 2 and "high-availability" in err and "true or false" in err
