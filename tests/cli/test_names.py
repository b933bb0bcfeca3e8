"""`facet` takes names as well as uuids for vm-id=, host=, image=, network= (and vm-ids=): each name is looked
up in its list before the call; a name that matches nothing, or several objects, is refused with the matches."""

import json

from console.core.models import Task
from console.models import VM, CdRom, Cluster, Host, Network
from tests.cli import test_cli
from tests.cli.test_cli import task_uuid

# The CLI tests' fixtures, shared.
world, facet, isolated = test_cli.world, test_cli.facet, test_cli.isolated

GiB = 1024**3


def test_vm_id_takes_a_name(world, facet):
    code, out, _ = facet("vm", "get", "vm-id=web-01", "--json")
    assert code == 0 and json.loads(out)["uuid"] == str(world.web.uuid)
    code, out, _ = facet("vm", "power-off", "vm-id=web-01")
    assert code == 0
    task = Task.objects.get(uuid=task_uuid(out))
    assert task.entity_uuid == world.web.uuid and task.params == {"action": "power-off"}


def test_create_takes_host_image_and_network_names(world, facet):
    Network.objects.create(cluster=world.cluster, name="dmz", vlan=20, cidr="10.30.0.0/24", gateway="10.30.0.1")
    code, out, err = facet("vm", "create", "name=app-01", "vcpus=1", "memory=1G", "host=cli-host",
                           "image=rescue-iso", "network=lan,dmz")
    assert code == 0, err
    vm = VM.objects.get(name="app-01")
    assert vm.host == world.host
    assert [nic.network.name for nic in vm.nics.order_by("index")] == ["lan", "dmz"]
    assert vm.cdroms.get(slot=0).image == world.iso


def test_insert_iso_and_bulk_take_names(world, facet):
    code, out, err = facet("vm", "insert-iso", "vm-id=db-01", "image=rescue-iso")
    assert code == 0, err
    assert Task.objects.get(uuid=task_uuid(out)).entity_uuid == world.db.uuid
    code, out, err = facet("vm", "bulk", "action=power-on", "vm-ids=db-01,web-01")
    assert code == 0, err
    assert Task.objects.get(uuid=task_uuid(out)).children.count() == 2


def test_an_unknown_name_is_refused_naming_the_key(world, facet):
    code, _, err = facet("vm", "get", "vm-id=nope")
    assert code == 1 and "vm-id: no VM is named 'nope'" in err
    code, _, err = facet("vm", "create", "name=app-01", "vcpus=1", "memory=1G", "network=wan")
    assert code == 1 and "network: no network is named 'wan'" in err
    assert not VM.objects.filter(name="app-01").exists()


def test_an_ambiguous_name_is_refused_with_the_matches(world, facet):
    """Names are unique per cluster: two clusters may each have a web-01, and a host or network named alike."""
    other = Cluster.objects.create(name="edge", virtual_ip="127.0.0.11")
    other_host = Host.objects.create(cluster=other, name="edge-host", address="127.0.0.3", driver_uri="sim://",
                                     cpus=4, memory_bytes=8 * GiB)
    other_lan = Network.objects.create(cluster=other, name="lan", vlan=10, cidr="10.40.0.0/24", gateway="10.40.0.1")
    twin = VM.objects.create(cluster=other, name="web-01", host=other_host, vcpus=1, memory_bytes=GiB)
    CdRom.objects.create(vm=twin, slot=0)
    code, _, err = facet("vm", "power-off", "vm-id=web-01")
    assert code == 1
    assert "vm-id: 2 VMs are named 'web-01'; give vm-id= the uuid of one of" in err
    assert str(world.web.uuid) in err and str(twin.uuid) in err
    assert not Task.objects.exists()
    code, _, err = facet("vm", "create", "name=app-01", "vcpus=1", "memory=1G", "network=lan")
    assert code == 1 and "network: 2 networks are named 'lan'" in err
    assert str(world.network.uuid) in err and str(other_lan.uuid) in err and "VLAN 10" in err
    code, out, _ = facet("vm", "get", f"vm-id={twin.uuid}", "--json")  # the uuid settles it
    assert code == 0 and json.loads(out)["name"] == "web-01"


def test_vm_list_shows_templates_and_lists_them_alone(world, facet):
    VM.objects.create(cluster=world.cluster, name="tpl-debian", host=world.host, vcpus=1, memory_bytes=GiB,
                      is_template=True, power_state="off")
    code, out, _ = facet("vm", "list")
    assert code == 0
    template_row = next(line for line in out.splitlines() if line.startswith("tpl-debian"))
    assert template_row.rstrip().endswith("yes")
    code, out, _ = facet("vm", "list", "is-template=true")
    assert code == 0 and "tpl-debian" in out and "web-01" not in out
    code, out, _ = facet("vm", "list", "is-template=false")
    assert "tpl-debian" not in out and "web-01" in out
    code, out, _ = facet("vm", "list", "--help")
    assert "is-template" in out and "templates only" in out
