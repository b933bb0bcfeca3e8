"""`facet ngt ...` against a live console, with NGT_NOUNS merged into the command table the way the lead
merges it."""

import pytest

from console.cli.commands import NOUNS
from console.core.models import Task
from ngt.cli import NOUNS as NGT_NOUNS
from ngt.models import GuestTools

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def facet(facet_as_admin):
    return facet_as_admin


def test_the_noun_has_ncli_verbs_and_does_not_clash():
    assert not set(NOUNS) & set(NGT_NOUNS)
    assert set(NGT_NOUNS["ngt"].verbs) >= {"list", "get", "enable", "mount", "unmount", "disable",
                                           "enable-applications", "disable-applications", "bulk-mount"}


def test_mount_get_and_list(facet, vm, run_tasks):
    code, out, err = facet("ngt", "mount", f"vm-id={vm.uuid}", "config-only=true")
    assert code == 0 and out.startswith("ngt.mount web-1: task") and "facet task get" in err
    assert Task.objects.get(kind="ngt.mount").params["config_only"] is True
    run_tasks()
    code, out, _ = facet("ngt", "get", "name=web-1")
    assert code == 0 and "iso_mounted:" in out and "True" in out
    code, out, _ = facet("ngt", "list", "iso-mounted=true")
    assert code == 0 and "web-1" in out.splitlines()[1] and "yes" in out


def test_applications_are_added_and_removed(facet, vm):
    code, out, _ = facet("ngt", "enable-applications", f"vm-id={vm.uuid}",
                         "application-names=vss-snapshot,self-service-restore")
    assert code == 0 and GuestTools.objects.get(vm=vm).capabilities == ["self-service-restore", "vss-snapshot"]
    facet("ngt", "disable-applications", f"vm-id={vm.uuid}", "application-names=vss-snapshot")
    assert GuestTools.objects.get(vm=vm).capabilities == ["self-service-restore"]
    code, _, err = facet("ngt", "enable-applications", f"vm-id={vm.uuid}", "application-names=telepathy")
    assert code == 1 and "application-names: unknown capability 'telepathy'" in err


def test_bulk_mount_by_uuids_and_refusals(facet, vm, run_tasks):
    code, out, _ = facet("ngt", "bulk-mount", f"vm-ids={vm.uuid}")
    assert code == 0 and "vm.bulk" in out
    run_tasks()
    assert GuestTools.objects.get(vm=vm).iso_mounted
    code, _, err = facet("ngt", "bulk-mount")
    assert code == 2 and "say which VMs" in err
    code, _, err = facet("ngt", "unmount", "vm-id=00000000-0000-0000-0000-000000000000")
    assert code == 1 and "404" in err


def test_get_ca(facet):
    code, out, _ = facet("ngt", "get-ca")
    assert code == 0 and "BEGIN CERTIFICATE" in out and "PRIVATE" not in out
