"""The nouns of container services: `facet volume-group ...` and `facet docker-host ...`, one API call each
(found by the command line through this package's `facet.cli` entry point)."""

from typing import Any, TextIO

from console.cli import output as o
from console.cli import values as v
from console.cli.commands import SEARCH, inventory, task_verb
from console.cli.spec import Key, Lookup, Noun, Verb

VOLUME_GROUP_ID = Key("volume-group-id", "UUID", "the volume group's uuid", v.uuid_text)
DOCKER_HOST_ID = Key("docker-host-id", "UUID", "the Docker host's uuid", v.uuid_text)
BY_GROUP_NAME = Lookup(Key("name", "NAME", "the volume group's exact name, instead of volume-group-id"),
                       target="volume-group-id", path="/volume-groups/", noun="volume group")
BY_HOST_NAME = Lookup(Key("name", "NAME", "the Docker host's exact name, instead of docker-host-id"),
                      target="docker-host-id", path="/docker-hosts/", noun="Docker host")
FORCE_MOVE = Key("force", "BOOL", "move it here even if it is attached elsewhere (detaches it there first)", v.boolean)
FORCE_DETACH = Key("force", "BOOL", "Admin: detach from a host that no longer answers", v.boolean)


def attached_to(group: dict) -> str:
    attachment = group.get("attachment")
    return f"{attachment['type']}:{attachment['name']}" if attachment else ""


def show_volume_group(group: dict, out: TextIO) -> None:
    o.write_record([
        ("Name", group["name"]), ("UUID", group["uuid"]), ("State", group.get("state")),
        ("Size", v.format_size(group.get("size_bytes"))), ("Used", v.format_size(group.get("used_bytes"))),
        ("Container", group.get("container_name")), ("Attached to", attached_to(group)),
        ("Docker volume", group.get("docker_volume")), ("Filesystem", group.get("fstype")),
        ("Created by host", group.get("created_by_host")), ("Shared with", ", ".join(group.get("shared_with") or [])),
        ("Mounts", len(group.get("mounts") or [])), ("Description", group.get("description")),
        ("Created", o.when("created_at")(group)),
    ], out)
    out.write("Disks:\n")
    o.table(("  INDEX", lambda d: f"  {d['index']}"), ("SIZE", o.size("size_bytes")), ("SERIAL", o.field("serial")),
            ("FILE", o.field("file_name")))(group.get("disks") or [], out)


def show_registered(host: dict, out: TextIO) -> None:
    """The key alone on stdout, so that `KEY=$(facet docker-host register name=...)` works."""
    out.write(host["token"] + "\n")


def registered_note(host: dict) -> str:
    return (f"Docker host {host['name']} registered ({host['uuid']}); its key is shown only this once. On the "
            f"machine, put FACET_TOKEN=<key> and FACET_DOCKER_HOST={host['name']} into "
            "/etc/facet/volume-plugin.env and start facet-volume-plugin.")


def show_removed(answer: Any, out: TextIO) -> None:
    """A registered machine is removed at once (no answer); a VM-backed one answers the VM's delete task."""
    if answer:
        o.show_task(answer, out)
    else:
        out.write("removed\n")


VOLUME_GROUP_TABLE = o.table(
    ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("STATE", o.field("state")),
    ("SIZE", o.size("size_bytes")), ("USED", o.size("used_bytes")), ("ATTACHED-TO", attached_to),
    ("DOCKER-VOLUME", o.field("docker_volume")), ("MOUNTS", lambda g: str(len(g.get("mounts") or [])) or ""))
DOCKER_HOST_TABLE = o.table(
    ("NAME", o.field("name")), ("UUID", o.field("uuid")), ("KIND", o.field("kind")), ("STATE", o.field("state")),
    ("DOCKER", o.field("docker_version")), ("PLUGIN", o.field("plugin_version")),
    ("LAST-CONTACT", o.when("last_contact_at")))


def share_verb(help_text: str, path: str) -> Verb:
    return Verb(help_text, "POST", "/volume-groups/{volume-group-id}/" + path,
                required=(VOLUME_GROUP_ID, Key("docker-host", "UUID", "the Docker host", v.uuid_text)),
                present=show_volume_group, lookup=BY_GROUP_NAME)


def group_verb(help_text: str, path: str, required: tuple[Key, ...] = (), optional: tuple[Key, ...] = (),
               method: str = "POST") -> Verb:
    return task_verb(help_text, method, "/volume-groups/{volume-group-id}/" + path,
                     required=(VOLUME_GROUP_ID, *required), optional=optional, lookup=BY_GROUP_NAME)


NOUNS: dict[str, Noun] = {
    "volume-group": Noun("volume groups: disks attached to one VM or Docker host at a time", {
        **inventory("/volume-groups/", "volume-group-id", "volume group", VOLUME_GROUP_TABLE, filters=(
            SEARCH, Key("state", "STATE", "creating, ready or deleting"),
            Key("docker", "BOOL", "true: those backing Docker volumes; false: the others", v.boolean))),
        "get": Verb("show one volume group, by uuid or by exact name", "GET", "/volume-groups/{volume-group-id}/",
                    required=(VOLUME_GROUP_ID,), present=show_volume_group, lookup=BY_GROUP_NAME),
        "create": task_verb(
            "create a volume group of sparse disks in a storage container", "POST", "/volume-groups/",
            required=(Key("name", "NAME", "the volume group's name"),
                      Key("size", "SIZE", "size of each disk, e.g. 10G", v.size, field="size_bytes")),
            optional=(Key("disks", "N", "how many disks (default 1)", v.integer(1, 16), field="disk_count"),
                      Key("container", "UUID", "the storage container (default: the first)", v.uuid_text),
                      Key("description", "TEXT", "free text"))),
        "grow": group_verb("grow one disk of a volume group", "grow/",
                           required=(Key("size", "SIZE", "the disk's new size, e.g. 20G", v.size, field="size_bytes"),),
                           optional=(Key("index", "N", "which disk (default 0)", v.integer(0, 15)),)),
        "attach": group_verb(
            "attach a volume group to a VM or a Docker host (one at a time)", "attach/",
            optional=(Key("vm", "UUID", "the VM to attach it to", v.uuid_text),
                      Key("docker-host", "UUID", "the Docker host to attach it to", v.uuid_text), FORCE_MOVE)),
        "detach": group_verb("detach a volume group from where it is attached", "detach/", optional=(FORCE_DETACH,)),
        "delete": group_verb("delete a detached volume group and its disk files", "", method="DELETE"),
        "share": share_verb("Admin: let another Docker host's plugin use this Docker volume (swarm nodes)", "share/"),
        "unshare": share_verb("Admin: take back a Docker volume's share with a Docker host", "unshare/"),
    }),
    "docker-host": Noun("Docker hosts: machines running dockerd and the Facet volume plugin", {
        **inventory("/docker-hosts/", "docker-host-id", "Docker host", DOCKER_HOST_TABLE, filters=(
            SEARCH, Key("kind", "vm|external", "VMs of the cluster or registered machines"),
            Key("state", "STATE", "pending, ready or refused"))),
        "get": Verb("show one Docker host, by uuid or by exact name", "GET", "/docker-hosts/{docker-host-id}/",
                    required=(DOCKER_HOST_ID,), lookup=BY_HOST_NAME),
        "create": task_verb(
            "create a VM from a disk image whose first boot installs Docker and the plugin with its own key",
            "POST", "/docker-hosts/",
            required=(Key("name", "NAME", "the host's (and its VM's) name"),
                      Key("image", "UUID", "a Debian or Ubuntu cloud disk image", v.uuid_text)),
            optional=(Key("vcpus", "N", "virtual CPUs (default 2)", v.integer(1, 256)),
                      Key("memory", "SIZE", "memory, e.g. 4G (default 2G)", v.size, field="memory_bytes"),
                      Key("network", "UUID", "a NIC on this network", v.uuid_text))),
        "register": Verb(
            "register an existing machine that sees the storage containers' directories; prints its key once",
            "POST", "/docker-hosts/register/",
            required=(Key("name", "NAME", "the host's name"),),
            optional=(Key("address", "TEXT", "where people reach it (free text)"),),
            present=show_registered, note=registered_note),
        "remove": Verb("remove a Docker host: its key stops working; a VM-backed host's VM is deleted",
                       "DELETE", "/docker-hosts/{docker-host-id}/", required=(DOCKER_HOST_ID,),
                       present=show_removed, lookup=BY_HOST_NAME),
    }),
}
