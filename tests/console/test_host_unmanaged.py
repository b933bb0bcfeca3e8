"""The host page's "Unmanaged domains" section: loaded by its own request when opened (the page itself does not
read the hypervisor), an Adopt button with a name field per adoptable domain for Operators, the reason for a
domain that cannot be adopted. On the sim driver and on libvirt's `test:///default` (in process, no daemon)."""

import pytest
from django.contrib.messages import get_messages

from console.core.models import AuditEvent, SimDomain, Task
from console.models import VM, Host
from console.services import adopt, power

MiB = 1024**2
LEGACY = "6f1c8a8e-2b7d-4c2e-9a59-5d7a4f3e2b10"


@pytest.fixture
def host(cluster) -> Host:
    return Host.objects.get(name="host-1")


@pytest.fixture
def listings(monkeypatch) -> list[str]:
    """The hosts whose hypervisor was asked for its domains (the real listing still runs)."""
    asked, real = [], adopt.unmanaged

    def counted(host):
        asked.append(host.name)
        return real(host)

    monkeypatch.setattr(adopt, "unmanaged", counted)
    return asked


def foreign_domain(path: str) -> SimDomain:
    return SimDomain.objects.create(uuid=LEGACY, host_name="host-1", power_state="on", definition={
        "name": "legacy", "vcpus": 2, "memory_bytes": 512 * MiB, "disks": {path: "raw"},
        "nics": {"52:54:00:aa:bb:cc": "lan"}})


def disk_in_container(cluster, name: str = "legacy/root.raw"):
    disk = cluster.storage_containers.get().resolve(name)
    disk.parent.mkdir(exist_ok=True)
    disk.write_bytes(b"\0" * MiB)
    return disk


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_host_page_does_not_read_the_hypervisor_the_section_does(cluster, host, client, viewer, listings):
    foreign_domain(str(disk_in_container(cluster)))
    client.force_login(viewer)
    page = client.get(f"/hosts/{host.uuid}/").content.decode()
    assert listings == [] and "legacy" not in page
    assert "Unmanaged domains" in page and 'hx-trigger="toggle once"' in page
    assert f'hx-get="/hosts/{host.uuid}/unmanaged/"' in page
    section = client.get(f"/hosts/{host.uuid}/unmanaged/").content.decode()
    assert listings == ["host-1"]
    assert "legacy" in section and "512 MiB" in section and ">On</span>" in section
    assert "<button" not in section and "Can be adopted by an Operator" in section  # a Viewer adopts nothing


def test_an_operator_adopts_a_domain_under_a_name_of_their_own(cluster, host, client, operator, run_tasks):
    foreign_domain(str(disk_in_container(cluster)))
    client.force_login(operator)
    section = client.get(f"/hosts/{host.uuid}/unmanaged/").content.decode()
    assert 'aria-label="Adopt legacy"' in section and f'name="uuid" value="{LEGACY}"' in section
    assert 'name="name" value="legacy"' in section
    answer = client.post(f"/hosts/{host.uuid}/adopt/", {"uuid": LEGACY, "name": "legacy-web"})
    assert answer.status_code == 302 and answer["Location"] == f"/hosts/{host.uuid}/?unmanaged=1#unmanaged"
    assert messages_of(answer) == ["Task started: Adopt VM legacy-web"]
    run_tasks()
    vm = VM.objects.get(uuid=LEGACY)
    assert (vm.name, vm.power_state, vm.vcpus, vm.host) == ("legacy-web", "on", 2, host)
    assert AuditEvent.objects.filter(action="vm.adopt", entity_uuid=LEGACY).exists()
    # Back on the page the section opens by itself, and the domain is a Facet VM now.
    page = client.get(answer["Location"]).content.decode()
    assert '<details class="card" id="unmanaged" open' in page and 'hx-trigger="load"' in page
    assert "legacy-web" in page
    section = client.get(f"/hosts/{host.uuid}/unmanaged/").content.decode()
    assert "None: every domain on host host-1 is a Facet VM" in section


def test_a_domain_that_cannot_be_adopted_says_why_and_has_no_button(cluster, host, client, operator, tmp_path):
    outside = tmp_path / "elsewhere.raw"
    outside.write_bytes(b"\0" * MiB)
    foreign_domain(str(outside))
    client.force_login(operator)
    section = client.get(f"/hosts/{host.uuid}/unmanaged/").content.decode()
    assert "Cannot be adopted:" in section and "is outside every storage container of cluster" in section
    assert "Adopt legacy" not in section
    # Posted anyway (a stale page): refused with the reason under the page's word for it, nothing made.
    answer = client.post(f"/hosts/{host.uuid}/adopt/", {"uuid": LEGACY})
    assert answer.status_code == 302
    [message] = messages_of(answer)
    assert message.startswith("Domain: disks[0]") and "outside every storage container" in message
    assert not VM.objects.filter(uuid=LEGACY).exists() and not Task.objects.filter(kind="vm.adopt").exists()


def test_a_name_already_taken_is_refused_naming_the_name(cluster, host, client, operator, vm):
    foreign_domain(str(disk_in_container(cluster)))
    client.force_login(operator)
    answer = client.post(f"/hosts/{host.uuid}/adopt/", {"uuid": LEGACY, "name": vm.name})
    assert messages_of(answer) == [f"Name: a VM named '{vm.name}' already exists; give the adopted VM another name"]
    assert not VM.objects.filter(uuid=LEGACY).exists()


def test_a_viewer_cannot_adopt(cluster, host, client, viewer):
    foreign_domain(str(disk_in_container(cluster)))
    client.force_login(viewer)
    assert client.post(f"/hosts/{host.uuid}/adopt/", {"uuid": LEGACY}).status_code == 403
    assert not VM.objects.filter(uuid=LEGACY).exists()


def test_a_hypervisor_that_does_not_answer_is_said_in_the_section_not_a_500(cluster, host, client, operator,
                                                                           tmp_path):
    pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
    Host.objects.filter(pk=host.pk).update(driver_uri=f"test://{tmp_path}/missing.xml")
    client.force_login(operator)
    section = client.get(f"/hosts/{host.uuid}/unmanaged/")
    assert section.status_code == 200
    assert "Could not read the domains of host host-1: cannot connect to the hypervisor" in section.content.decode()
    answer = client.post(f"/hosts/{host.uuid}/adopt/", {"uuid": LEGACY})
    assert answer.status_code == 302 and "cannot connect to the hypervisor" in messages_of(answer)[0]


# libvirt's test:///default: its own "test" domain, whose disk is outside every container, and one defined here.


@pytest.fixture
def libvirt_hosts(cluster):
    libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup installs it)")
    Host.objects.filter(cluster=cluster).update(driver_uri="test:///default")
    yield libvirt.open("test:///default")
    from console.core.drivers import get_driver

    for made in VM.objects.all():
        get_driver("test:///default").delete(made)


def test_on_libvirt_the_section_lists_the_domains_and_an_operator_adopts_one(
        cluster, libvirt_hosts, host, client, operator, actor, run_tasks):
    disk = disk_in_container(cluster, "old-db/root.raw")
    domain = libvirt_hosts.defineXML(f"""<domain type='test'><name>old-db</name><memory unit='MiB'>256</memory>
      <vcpu>2</vcpu><os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
      <interface type='user'><mac address='52:54:00:12:34:57'/></interface></devices></domain>""")
    try:
        client.force_login(operator)
        section = client.get(f"/hosts/{host.uuid}/unmanaged/").content.decode()
        assert "Adopt old-db" in section and ">Off</span>" in section and "256 MiB" in section
        test_row = section[section.index("<td>test<br>"):]
        assert "Cannot be adopted:" in test_row.split("</tr>")[0]  # test:///default's own domain, disk outside
        answer = client.post(f"/hosts/{host.uuid}/adopt/", {"uuid": domain.UUIDString(), "name": "old-db"})
        assert messages_of(answer) == ["Task started: Adopt VM old-db"]
        run_tasks()
        vm = VM.objects.get(uuid=domain.UUIDString())
        assert (vm.power_state, vm.memory_bytes, vm.disks.get().path) == ("off", 256 * MiB, disk)
        assert "old-db" not in client.get(f"/hosts/{host.uuid}/unmanaged/").content.decode()
        assert Task.objects.get(kind="vm.adopt").status == Task.Status.SUCCEEDED
        power.request_power(actor, vm, "power-on")
        run_tasks()
        assert domain.isActive()
    finally:
        if domain.isActive():
            domain.destroy()
        domain.undefine()
