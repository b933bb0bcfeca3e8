"""The `facet` CLI against a live console (pytest-django's `live_server`) with a small inventory made here:
each test runs `main([...])` the way an administrator types it and checks what they would see."""

import io
import json
import stat

import pytest
from django.contrib.auth.models import Group, User

from console.cli import main as cli
from console.cli import values
from console.cli.client import config_path
from console.cli.output import Meter
from console.core.access import ADMIN, create_token
from console.core.actors import Actor
from console.core.models import Task
from console.core.tasks import running, sending
from console.models import VM, CdRom, Cluster, Host, Image, Network, StorageContainer
from tests.conftest import cli_runner

GiB = 1024**3
PASSWORD = "a long test password 42"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No developer login and no real broker leak into a test."""
    for name in ("FACET_URL", "FACET_TOKEN", "FACET_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # Tasks are handed to Celery on commit. There is no worker here, and the default broker socket may be
    # a developer's running Redis whose worker would receive uuids it does not know: enqueue nothing. The
    # tasks stay `queued`, which is what the API answers (202) anyway; worker runs are tested elsewhere.
    monkeypatch.setattr(sending, "send", lambda task: None)
    monkeypatch.setattr(cli, "pause", lambda seconds: None)


@pytest.fixture
def facet(capsys):
    """Run the CLI; answer (exit code, stdout, stderr)."""
    return cli_runner(capsys)


@pytest.fixture
def world(transactional_db, live_server, tmp_path, monkeypatch):
    """A cluster with one sim host, a container, a network, an ISO, two VMs and an Admin with a token."""
    cluster = Cluster.objects.create(name="cli-test", virtual_ip="127.0.0.10")
    host = Host.objects.create(cluster=cluster, name="cli-host", address="127.0.0.2", driver_uri="sim://",
                               cpus=16, memory_bytes=64 * GiB)
    root = tmp_path / "container"
    root.mkdir()
    storage_container = StorageContainer.objects.create(cluster=cluster, name="default", path=str(root))
    network = Network.objects.create(cluster=cluster, name="lan", vlan=10, cidr="10.20.0.0/24",
                                     gateway="10.20.0.1", pool_start="10.20.0.10", pool_end="10.20.0.50")
    iso = Image.objects.create(cluster=cluster, name="rescue-iso", kind="iso", storage_container=storage_container,
                               file_name="images/rescue.iso", size_bytes=64 * 1024)
    web = VM.objects.create(cluster=cluster, name="web-01", hostname="web-01", host=host, vcpus=2,
                            memory_bytes=4 * GiB, power_state="on")
    db = VM.objects.create(cluster=cluster, name="db-01", hostname="db-01", host=host, vcpus=4,
                           memory_bytes=8 * GiB, power_state="off")
    for vm in (web, db):
        CdRom.objects.create(vm=vm, slot=0)
    admin = User.objects.create_user("admin", password=PASSWORD)
    admin.groups.add(Group.objects.get_or_create(name=ADMIN)[0])
    _, key = create_token(Actor(user=admin), admin, "t")
    monkeypatch.setenv("FACET_URL", live_server.url)
    monkeypatch.setenv("FACET_TOKEN", key)

    class World:
        pass

    w = World()
    w.url, w.key, w.cluster, w.host, w.network, w.iso, w.web, w.db, w.admin = (
        live_server.url, key, cluster, host, network, iso, web, db, admin)
    return w


def task_uuid(stdout: str) -> str:
    """The uuid in a change's answer line: `vm.power db-01: task UUID queued`."""
    return stdout.split(" task ", 1)[1].split()[0]


# Values and help: no server needed.

@pytest.mark.parametrize(("text", "size"), [
    ("10G", 10 * GiB), ("512M", 512 * 1024**2), ("1T", 1024**4), ("1.5G", 3 * GiB // 2), ("2GiB", 2 * GiB),
    ("4096", 4096), ("1k", 1024)])
def test_sizes_are_binary(text, size):
    assert values.size(text) == size


@pytest.mark.parametrize("text", ["", "G", "10X", "-1G", "0", "1.3K", "ten"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError, match="size|bytes"):
        values.size(text)


def test_sizes_are_shown_short():
    assert [values.format_size(n) for n in (4 * GiB, 3 * GiB // 2, 512 * 1024**2, 100)] == ["4G", "1.5G", "512M",
                                                                                              "100"]


def test_help_lists_nouns_verbs_and_exit_codes(facet):
    code, out, _ = facet("--help")
    assert code == 0
    for word in ("vm", "task", "token", "host", "network", "image", "cluster", "login", "FACET_TOKEN"):
        assert word in out
    assert "Exit codes" in out
    assert all(f"  {n} " in out for n in range(6))

    code, out, _ = facet("vm", "--help")
    assert code == 0
    for verb in ("list", "get", "create", "clone", "delete", "power-on", "power-off", "reset", "shutdown", "reboot",
                 "bulk", "insert-iso", "eject-iso"):
        assert f"  {verb} " in out

    code, out, _ = facet("vm", "create", "--help")
    assert code == 0
    assert "memory=SIZE" in out and "(required)" in out and "--wait" in out


def test_no_command_is_a_usage_error(facet):
    code, _, err = facet()
    assert code == 2
    assert "usage: facet" in err


@pytest.mark.parametrize(("args", "says"), [
    (["vmm", "list"], "unknown noun 'vmm'"),
    (["vm", "explode"], "unknown verb 'explode'"),
    (["vm"], "give a verb after 'vm'"),
    (["vm", "list", "colour=red"], "unknown key 'colour' for facet vm list; valid keys: search, power-state"),
    (["vm", "get"], "missing required key vm-id"),
    (["vm", "power-on"], "missing required key vm-id"),
    (["vm", "create", "name=a", "vcpus=1", "memory=lots"], "memory: 'lots' is not a size"),
    (["vm", "create", "name=a", "vcpus=0", "memory=1G"], "vcpus: 0 is out of range"),
    (["vm", "clone", "vm-id=3f2b9c1e-8d4a-4f1e-9c1a-2b3c4d5e6f70", "name=b", "linked=maybe"],
     "linked: 'maybe' is not a boolean"),
    (["vm", "list", "search"], "expected key=value, got 'search'"),
    (["vm", "list", "search=a", "search=b"], "key 'search' is given twice"),
    (["vm", "get", "vm-id=3f2b9c1e-8d4a-4f1e-9c1a-2b3c4d5e6f70", "--all"], "--all does not apply"),
    (["vm", "list", "--verbose"], "unknown option '--verbose'"),
])
def test_usage_errors_exit_2_and_say_what_is_wrong(facet, args, says):
    code, out, err = facet(*args)
    assert code == 2
    assert says in err
    assert out == ""


def test_not_logged_in_exits_3(facet):
    code, _, err = facet("vm", "list")
    assert code == 3
    assert "not logged in" in err and "facet login" in err


def test_unreachable_server_exits_3(facet, monkeypatch):
    monkeypatch.setenv("FACET_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("FACET_TOKEN", "facet_whatever")
    code, _, err = facet("vm", "list")
    assert code == 3
    assert "cannot reach http://127.0.0.1:9" in err


def test_progress_bar_redraws_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    meter = Meter(stream)
    meter.update({"status": "running", "percent": 40, "message": "Preparing disk 0"})
    meter.update({"status": "succeeded", "percent": 99, "message": "db-01 created"})
    meter.close()
    text = stream.getvalue()
    assert text.startswith("\r[############") and "40% running: Preparing disk 0" in text
    assert "\r[##############################] 100% succeeded: db-01 created" in text
    assert text.count("\n") == 1


# Against the live console.

def test_vm_list_shows_a_table(world, facet):
    code, out, _ = facet("vm", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "UUID", "POWER", "HOST", "VCPUS", "MEMORY", "IPS", "TEMPLATE"]
    assert lines[1].split()[:6] == ["db-01", str(world.db.uuid), "off", "cli-host", "4", "8G"]
    assert lines[2].split()[:6] == ["web-01", str(world.web.uuid), "on", "cli-host", "2", "4G"]
    assert lines[1].index(str(world.db.uuid)) == lines[0].index("UUID")  # aligned


def test_vm_list_filters_and_orders(world, facet):
    code, out, _ = facet("vm", "list", "power-state=off")
    assert code == 0 and "db-01" in out and "web-01" not in out
    code, out, _ = facet("vm", "list", f"host={world.host.uuid}", "ordering=-memory_bytes", "is-template=false")
    assert code == 0
    assert out.index("db-01") < out.index("web-01")
    code, out, err = facet("vm", "list", "is-template=true")
    assert code == 0 and "web-01" not in out and "nothing matches" in err


def test_vm_list_json_is_the_api_page(world, facet):
    code, out, _ = facet("vm", "list", "--json")
    assert code == 0
    page = json.loads(out)
    assert page["count"] == 2
    assert {vm["name"] for vm in page["results"]} == {"web-01", "db-01"}


def test_vm_list_pages(world, facet):
    code, out, err = facet("vm", "list", "page-size=1")
    assert code == 0 and "db-01" in out and "web-01" not in out
    assert "1 of 2 shown" in err
    code, out, err = facet("vm", "list", "page-size=1", "--all")
    assert code == 0 and "db-01" in out and "web-01" in out and "shown" not in err
    code, out, _ = facet("vm", "list", "page-size=1", "--all", "--json")
    assert [vm["name"] for vm in json.loads(out)["results"]] == ["db-01", "web-01"]


def test_vm_get_by_uuid_and_by_name(world, facet):
    code, out, _ = facet("vm", "get", f"vm-id={world.web.uuid}")
    assert code == 0
    assert "Name:        web-01" in out and "Memory:      4G" in out and "Host:        cli-host" in out
    code, out, _ = facet("vm", "get", "name=db-01", "--json")
    assert code == 0
    assert json.loads(out)["uuid"] == str(world.db.uuid)


def test_vm_get_by_a_name_that_only_partly_matches_is_refused(world, facet):
    code, _, err = facet("vm", "get", "name=web")
    assert code == 1
    assert "no VM is named 'web'" in err


def test_unknown_vm_uuid_is_refused(world, facet):
    code, _, err = facet("vm", "get", "vm-id=3f2b9c1e-8d4a-4f1e-9c1a-2b3c4d5e6f70")
    assert code == 1
    assert "HTTP 404" in err and "detail: No VM matches the given query." in err


def test_unknown_token_means_not_logged_in(world, facet, monkeypatch):
    """401 is exit 3, like having no credentials at all: the remedy is the same, `facet login`."""
    monkeypatch.setenv("FACET_TOKEN", "facet_not-a-token")
    code, _, err = facet("vm", "list")
    assert code == 3
    assert "Invalid or revoked token." in err and "facet login" in err


def test_token_create_prints_a_working_token_and_revoke_stops_it(world, facet, monkeypatch):
    code, out, err = facet("token", "create", "name=ci")
    assert code == 0
    token = out.strip()
    assert token.startswith("facet_") and "\n" not in token
    assert "shown only this once" in err

    monkeypatch.setenv("FACET_TOKEN", token)
    code, out, _ = facet("vm", "list")
    assert code == 0 and "web-01" in out

    code, out, _ = facet("token", "list", "--json")
    ci = next(t for t in json.loads(out)["results"] if t["name"] == "ci")
    code, out, _ = facet("token", "list")
    assert "ci" in out.split() and token[:12] in out

    monkeypatch.setenv("FACET_TOKEN", world.key)
    code, out, _ = facet("token", "revoke", f"token-id={ci['uuid']}")
    assert code == 0 and "revoked_at:" in out

    monkeypatch.setenv("FACET_TOKEN", token)
    code, _, err = facet("vm", "list")
    assert code == 3
    assert "Invalid or revoked token." in err


def test_power_off_an_off_vm_is_refused_with_the_api_message(world, facet):
    code, out, err = facet("vm", "power-off", f"vm-id={world.db.uuid}")
    assert code == 1
    assert out == ""
    assert "HTTP 409" in err
    assert "action: VM db-01 is already off" in err.splitlines()


def test_power_on_answers_the_task(world, facet):
    code, out, err = facet("vm", "power-on", f"vm-id={world.db.uuid}")
    assert code == 0
    assert out.startswith("vm.power db-01: task ") and out.rstrip().endswith("queued")
    task = Task.objects.get(uuid=task_uuid(out))
    assert task.kind == "vm.power" and task.params == {"action": "power-on"}
    assert f"facet task get task-id={task.uuid} --wait" in err


def test_vm_create_turns_sizes_into_bytes(world, facet):
    code, out, _ = facet("vm", "create", "name=app-01", "vcpus=2", "memory=2G", "disk=10G,512M",
                         f"network={world.network.uuid}", "ip=auto", f"host={world.host.uuid}", "--json")
    assert code == 0
    task = json.loads(out)
    assert task["kind"] == "vm.create" and task["status"] == "queued"
    vm = VM.objects.get(name="app-01")
    assert vm.memory_bytes == 2 * GiB and vm.vcpus == 2
    assert [d.size_bytes for d in vm.disks.order_by("index")] == [10 * GiB, 512 * 1024**2]
    nic = vm.nics.get()
    assert nic.network == world.network and nic.ip == "10.20.0.10"


def test_vm_create_refusals(world, facet):
    code, _, err = facet("vm", "create", "name=app-02", "vcpus=1", "memory=1G", "ip=10.20.0.20")
    assert code == 2 and "ip: 1 address(es) for 0 network(s)" in err
    code, _, err = facet("vm", "create", "name=web-01", "vcpus=1", "memory=1G")
    assert code == 1 and "name: a VM named 'web-01' already exists" in err
    code, _, err = facet("vm", "create", "name=app-02", "vcpus=1", "memory=1K")
    assert code == 1 and "memory: a VM needs at least" in err  # the API's memory_bytes, shown as the CLI's key


def test_clone_delete_and_cdrom_verbs_answer_tasks(world, facet):
    code, out, _ = facet("vm", "clone", f"vm-id={world.db.uuid}", "name=db-02", "linked=true")
    assert code == 0 and out.startswith("vm.clone db-02: task ")
    assert Task.objects.get(uuid=task_uuid(out)).params["linked"] is True

    code, out, _ = facet("vm", "insert-iso", f"vm-id={world.db.uuid}", f"image={world.iso.uuid}")
    assert code == 0 and out.startswith("vm.cdrom.insert db-01: task ")
    code, _, err = facet("vm", "eject-iso", f"vm-id={world.web.uuid}", "slot=0")
    assert code == 1 and "slot: CD-ROM 0 of web-01 is already empty" in err

    code, out, _ = facet("vm", "delete", f"vm-id={world.web.uuid}")
    assert code == 0 and out.startswith("vm.delete web-01: task ")
    assert VM.objects.get(pk=world.web.pk).power_state == "deleting"


def test_bulk_by_uuids_or_by_filter(world, facet):
    code, out, _ = facet("vm", "bulk", "action=power-off", f"vm-ids={world.web.uuid},{world.db.uuid}")
    assert code == 0 and out.startswith("vm.bulk power-off on 2 VMs: task ")
    children = Task.objects.get(uuid=task_uuid(out)).children.all()
    assert sorted((c.entity_name, c.status) for c in children) == [("db-01", "succeeded"), ("web-01", "queued")]

    code, out, _ = facet("vm", "bulk", "action=power-on", "power-state=off", "search=db", "--json")
    assert code == 0
    assert json.loads(out)["entity"]["name"] == "power-on on 1 VMs"

    code, _, err = facet("vm", "bulk", "action=power-on")
    assert code == 2 and "say which VMs" in err
    code, _, err = facet("vm", "bulk", "action=power-on", f"vm-ids={world.web.uuid}", "search=web")
    assert code == 2 and "not both" in err
    code, out, _ = facet("vm", "bulk", "action=power-on", "all=yes", "confirm-count=2", "--json")
    assert code == 0 and json.loads(out)["entity"]["name"] == "power-on on 2 VMs"
    code, _, err = facet("vm", "bulk", "action=power-on", "all=yes", "confirm-count=7")
    assert code == 1 and "the selection holds 2 VMs, not 7" in err


def test_task_get_and_list(world, facet):
    task = Task.objects.create(kind="vm.power", entity_type="vm", entity_uuid=world.web.uuid, entity_name="web-01",
                               status="running", percent=40, message="Powering on", created_by=world.admin)
    code, out, _ = facet("task", "get", f"task-id={task.uuid}")
    assert code == 0
    assert "Status:   running 40%" in out and "Message:  Powering on" in out
    code, out, _ = facet("task", "list", "status=running,queued")
    assert code == 0 and str(task.uuid) in out and "Powering on" in out
    code, out, _ = facet("task", "list", "status=failed")
    assert str(task.uuid) not in out


def test_task_wait_follows_progress_to_success(world, facet, monkeypatch):
    task = Task.objects.create(kind="vm.create", entity_type="vm", entity_name="app-01", status="queued")
    steps = iter([{"status": "running", "percent": 30, "message": "Preparing disk 0"},
                  {"status": "running", "percent": 85, "message": "Defining the VM"},
                  {"status": "succeeded", "percent": 100, "message": "app-01 created"}])
    monkeypatch.setattr(cli, "pause", lambda seconds: Task.objects.filter(pk=task.pk).update(**next(steps)))
    code, out, err = facet("task", "get", f"task-id={task.uuid}", "--wait")
    assert code == 0
    assert err.splitlines() == ["  0% queued", " 30% running: Preparing disk 0", " 85% running: Defining the VM",
                                "100% succeeded: app-01 created"]
    assert "Status:   succeeded" in out


def test_task_wait_on_a_failed_task_exits_4_without_the_traceback(world, facet):
    task = Task.objects.create(kind="vm.clone", entity_type="vm", entity_name="db-02", status="failed",
                               error="FileNotFoundError: no disk\n\nTraceback (most recent call last):\n  ...")
    code, out, err = facet("task", "get", f"task-id={task.uuid}", "--wait")
    assert code == 4
    assert "Error:    FileNotFoundError: no disk" in out and "Traceback" not in out + err
    assert f"task {task.uuid} failed" in err


def test_inventory_lists(world, facet):
    for noun, expected in [("host", "cli-host"), ("network", "10.20.0.0/24"), ("image", "rescue-iso"),
                           ("cluster", "cli-test"), ("storage-container", "default")]:
        code, out, _ = facet(noun, "list")
        assert code == 0 and expected in out, noun
    code, out, _ = facet("host", "list")
    assert "64G" in out and "sim://" in out
    code, out, _ = facet("image", "get", f"image-id={world.iso.uuid}")
    assert code == 0 and "name:" in out and "rescue-iso" in out


def test_server_error_exits_5(world, facet, monkeypatch):
    from console.api import views

    def broken(self, request, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.HostViewSet, "list", broken)
    code, _, err = facet("host", "list")
    assert code == 5
    assert "HTTP 500" in err


def test_login_saves_a_private_config_and_logout_revokes_it(world, facet, monkeypatch):
    monkeypatch.delenv("FACET_TOKEN")
    monkeypatch.delenv("FACET_URL")
    code, _, err = facet("login", f"url={world.url}", "username=admin", "password=wrong")
    assert code == 3 and "login refused" in err

    code, out, _ = facet("login", f"url={world.url}/api/v1/", "username=admin", f"password={PASSWORD}")
    assert code == 0 and "Logged in" in out
    path = config_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["url"] == world.url and saved["token"].startswith("facet_") and saved["token_name"].startswith("cli@")

    code, out, _ = facet("vm", "list")
    assert code == 0 and "web-01" in out

    monkeypatch.setenv("FACET_PASSWORD", PASSWORD)  # a second login from this machine: same default name
    code, out, _ = facet("login", f"url={world.url}", "username=admin")
    assert code == 0
    second = json.loads(path.read_text())
    assert second["token"] != saved["token"] and second["token_name"] != saved["token_name"]

    monkeypatch.setenv("FACET_TOKEN", "facet_not-a-token")  # the environment wins over the file
    code, _, _ = facet("vm", "list")
    assert code == 3
    monkeypatch.delenv("FACET_TOKEN")

    code, out, _ = facet("logout")
    assert code == 0 and "revoked" in out
    assert not path.exists()
    assert world.admin.api_tokens.get(uuid=second["token_uuid"]).revoked_at is not None
    code, _, _ = facet("vm", "list")
    assert code == 3


def test_a_role_that_may_not_change_is_refused_not_logged_out(world, facet, monkeypatch):
    """403 (the role does not allow it) is exit 1, unlike 401 (no valid token) which is exit 3."""
    viewer = User.objects.create_user("vera", password=PASSWORD)
    viewer.groups.add(Group.objects.get_or_create(name="Viewer")[0])
    _, key = create_token(Actor(user=viewer), viewer, "t")
    monkeypatch.setenv("FACET_TOKEN", key)
    code, out, _ = facet("vm", "list")
    assert code == 0 and "web-01" in out
    code, _, err = facet("vm", "power-on", f"vm-id={world.db.uuid}")
    assert code == 1
    assert "HTTP 403" in err and "detail: Your role does not allow this." in err


def test_a_change_with_wait_follows_its_task(world, facet, monkeypatch):
    def worker_fails(seconds):  # stands in for the worker between two polls
        Task.objects.filter(kind="vm.power").update(status="failed", error="DriverError: the host is down")

    monkeypatch.setattr(cli, "pause", worker_fails)
    code, out, err = facet("vm", "power-on", f"vm-id={world.db.uuid}", "--wait")
    assert code == 4
    assert "failed: DriverError: the host is down" in out
    assert "facet task get" not in err  # no "follow it" hint once followed
    assert err.splitlines()[-1] == "DriverError: the host is down"


def test_help_command(facet):
    assert facet("help")[0] == 0
    code, out, _ = facet("help", "vm", "bulk")
    assert code == 0 and "usage: facet vm bulk action=ACTION" in out
    code, out, _ = facet("login", "--help")
    assert code == 0 and "username=NAME" in out


# --- bulk clone ------------------------------------------------------------------------------------------
@pytest.fixture
def golden(world, monkeypatch):
    """A powered-off VM of 256 MiB with one NIC with a static address, to bulk-clone; nothing is sent to a
    broker (the bulk's children go together)."""
    from console.models import Nic

    monkeypatch.setattr(sending, "send_all", lambda tasks: None)
    vm = VM.objects.create(cluster=world.cluster, name="golden", hostname="golden", host=world.host, vcpus=1,
                           memory_bytes=256 * 1024**2, power_state="off")
    Nic.objects.create(vm=vm, index=0, network=world.network, mac="52:54:00:00:aa:01", ip="10.20.0.10")
    return vm


def test_bulk_clone_with_a_csv_and_a_script_waits_with_progress_and_exits_0(world, golden, facet, monkeypatch,
                                                                            tmp_path):
    table = tmp_path / "clones.csv"
    table.write_text("name,hostname,ip,role\n,alpha,10.20.0.40,db\nweb-x,,,web\n")
    script = tmp_path / "user-data"
    script.write_text("## template: jinja\n#cloud-config\nruncmd:\n  - echo {{ ds.meta_data.meta.role }}\n")

    def worker(seconds):  # stands in for the worker between two polls
        for task in Task.objects.filter(status="queued", children__isnull=True):
            running.execute(str(task.uuid), task.attempts)

    monkeypatch.setattr(cli, "pause", worker)
    code, out, err = facet("vm", "bulk-clone", f"vm-id={golden.uuid}", "count=2", "name-pattern=app-{n:02}",
                           f"per-clone={table}", f"customization={script}", "power-on=true", "--wait")
    assert code == 0, err
    assert "100% succeeded: 2 of 2 done" in err.splitlines()[-1]
    assert out.startswith("vm.bulk-clone golden: task ") and out.rstrip().endswith("succeeded: 2 of 2 done")
    clones = {vm.name: vm for vm in VM.objects.filter(parent=golden)}
    assert sorted(clones) == ["app-01", "web-x"] and clones["app-01"].hostname == "alpha"
    assert clones["app-01"].nics.get().ip == "10.20.0.40" and clones["web-x"].power_state == "on"
    assert clones["web-x"].customization.key_values == {"role": "web"}


def test_bulk_clone_plan_shows_the_plan_and_makes_nothing(world, golden, facet):
    before = VM.objects.count(), Task.objects.count()
    code, out, err = facet("vm", "bulk-clone-plan", f"vm-id={golden.uuid}", "count=3", "name-pattern=app-{n}",
                           "start-index=8", f"host={world.host.uuid}")
    assert code == 0, err
    assert out.splitlines()[0] == "3 clones of golden: 3 vCPUs, 768M memory, 0 disk, 3 IPs; 3 on cli-host"
    assert "app-8" in out and "app-10" in out and "10.20.0.11" in out
    assert (VM.objects.count(), Task.objects.count()) == before


@pytest.mark.parametrize(("args", "table", "message"), [
    (["count=0"], None, "count: give 1 to 1000 clones"),
    (["name-pattern=web"], None, "name-pattern: 'web' has no {n}"),
    ([], "name,ip\n,10.20.0.40\n", "per-clone: 1 data rows for 2 clones"),
    ([], "name,ip\n,10.20.0.40\n,10.20.0.40\n", "per-clone: line 3, column 2 (ip): 10.20.0.40 is also the address"),
    ([], "name,ip\n,10.20.0.200\n,\n", "per-clone: line 2, column 2 (ip): 10.20.0.200 is outside the static-IP pool"),
    ([], "name,colour\n,red\n,blue\n", "per-clone: line 1, column 2 (colour): unknown column"),
    (["linked=true"], None, "linked: VM golden is on"),
])
def test_bulk_clone_bad_input_exits_1_naming_the_key(world, golden, facet, tmp_path, args, table, message):
    VM.objects.filter(pk=golden.pk).update(power_state="on")
    if table is not None:
        (tmp_path / "t.csv").write_text(table)
        args = [*args, f"per-clone={tmp_path / 't.csv'}"]
    given = {arg.split("=")[0] for arg in args}
    defaults = [d for d in ("count=2", "name-pattern=w-{n}") if d.split("=")[0] not in given]
    before = VM.objects.count(), Task.objects.count()
    code, _, err = facet("vm", "bulk-clone", f"vm-id={golden.uuid}", *defaults, *args)
    assert code == 1, err
    assert message in err
    assert (VM.objects.count(), Task.objects.count()) == before


def test_bulk_clone_of_an_unreadable_table_is_a_usage_error(world, golden, facet, tmp_path):
    code, _, err = facet("vm", "bulk-clone", f"vm-id={golden.uuid}", "count=2", "name-pattern=w-{n}",
                         f"per-clone={tmp_path / 'missing.csv'}")
    assert code == 2 and "per-clone: cannot read" in err


def test_a_cancelled_bulk_clone_exits_4_with_wait_and_task_cancel_says_the_counts(world, golden, facet):
    code, out, _ = facet("vm", "bulk-clone", f"vm-id={golden.uuid}", "count=3", "name-pattern=c-{n}")
    parent = task_uuid(out)
    code, out, err = facet("task", "cancel", f"task-id={parent}")
    assert code == 0, err
    assert "cancelled: cancelled: 0 of 3 done, 3 cancelled" in out
    assert not VM.objects.filter(parent=golden).exists()
    code, out, err = facet("task", "get", f"task-id={parent}", "--wait")
    assert code == 4 and f"task {parent} cancelled" in err
