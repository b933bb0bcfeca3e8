"""The `ngt` noun, in ncli's words: `facet ngt list|get|enable|mount|unmount|disable|enable-applications|
disable-applications|bulk-mount|get-ca`; and `VM_OPTION`, the keys that give `vm create` and `vm clone` their
Guest Tools (found by the command line through this package's `facet.cli` entry point)."""

from collections.abc import Callable

from console.cli import output as o
from console.cli import values as v
from console.cli.client import ApiRefused, Client, credentials
from console.cli.commands import LIST_KEYS, VM_FILTERS, VM_ID, bulk_body, task_verb
from console.cli.errors import OK
from console.cli.names import resolve_names
from console.cli.plugins import VMOptionKeys
from console.cli.spec import Invocation, Key, Lookup, Noun, Verb

TOOLS_PATH = "/vms/{vm-id}/guest-tools/"
BY_VM_NAME = Lookup(Key("name", "NAME", "the VM's exact name, instead of vm-id"), target="vm-id", path="/vms/",
                    noun="VM")
APPLICATION_NAMES = Key("application-names", "NAME[,NAME]", "self-service-restore, vss-snapshot",
                        v.listed(v.text))
NGT_TABLE = o.table(
    ("VM", o.field("vm_name")), ("UUID", o.field("vm")), ("ENABLED", o.flag("enabled")),
    ("ISO", o.flag("iso_mounted")), ("LINK", o.flag("link_active")), ("VERSION", o.field("installed_version")),
    ("UPGRADE", o.flag("upgrade_available")), ("APPLICATIONS", lambda s: ",".join(s.get("capabilities") or [])),
    ("CERT-EXPIRES", o.when("certificate_not_after")))


def change_applications(enable: bool) -> Callable[[Invocation], int]:
    """Add or remove capabilities: read the VM's list, change it, write it back (PATCH takes the whole list)."""

    def run(call: Invocation) -> int:
        login = credentials()
        client = Client(login.url, login.token)
        given = dict(call.values)
        resolve_names(client, call.verb, given)  # vm-id=NAME
        path = TOOLS_PATH.replace("{vm-id}", str(given["vm-id"]))
        names = call.values["application-names"]
        current = client.request("GET", path)["capabilities"]
        wanted = [*current, *names] if enable else [name for name in current if name not in names]
        try:
            answer = client.request("PATCH", path, body={"capabilities": list(dict.fromkeys(wanted))})
        except ApiRefused as exc:
            exc.rename_fields({"capabilities": APPLICATION_NAMES.name})
            raise
        if call.json:
            o.write_json(answer, call.out)
        else:
            o.show_record(answer, call.out)
        return OK

    return run


GUEST_TOOLS_KEYS = (
    Key("guest-tools", "BOOL", "mount a tools ISO with a new certificate pair in the same task (default: when the "
                               "clone's source has Guest Tools)", v.boolean, field="mount"),
    Key("guest-tools-capabilities", "NAME[,NAME]", "self-service-restore, vss-snapshot (default: the source's)",
        v.listed(v.text), field="capabilities"),
)


def guest_tools_body(body: dict) -> dict:
    """`guest-tools=` and `guest-tools-capabilities=` become the request's `guest_tools` object."""
    part = {key.api_name: body.pop(key.api_name) for key in GUEST_TOOLS_KEYS if key.api_name in body}
    return {**body, "guest_tools": part} if part else body


def tools_verb(help_text: str, operation: str, optional: tuple[Key, ...] = ()) -> Verb:
    return task_verb(help_text, "POST", TOOLS_PATH + f"{operation}/", optional=optional)


def bulk_mount_body(fields: dict) -> dict:
    fields = dict(fields)
    config_only = fields.pop("config_only", None)
    body = bulk_body(fields)
    return {**body, "params": {"config_only": config_only}} if config_only is not None else body


NOUNS: dict[str, Noun] = {
    "ngt": Noun("Guest Tools: certificates, tools ISO and agent state per VM", {
        "list": Verb("list the VMs that have Guest Tools state", "GET", "/guest-tools/", optional=(
            Key("enabled", "BOOL", "enabled (true) or not (false)", v.boolean),
            Key("iso-mounted", "BOOL", "the tools ISO is mounted", v.boolean),
            Key("link-active", "BOOL", "the agent is connected", v.boolean), *LIST_KEYS), present=NGT_TABLE),
        "get": Verb("show a VM's Guest Tools state", "GET", TOOLS_PATH, required=(VM_ID,), lookup=BY_VM_NAME),
        "enable": tools_verb("enable Guest Tools (no ISO)", "enable"),
        "mount": tools_verb("mount a tools ISO with a new certificate; the previous one is revoked", "mount",
                            optional=(Key("config-only", "BOOL", "only configuration and certificates, for a "
                                                                 "clone whose template has the agent", v.boolean),)),
        "unmount": tools_verb("eject the tools ISO and delete it", "unmount"),
        "disable": tools_verb("unmount and revoke the certificate", "disable"),
        "enable-applications": Verb("turn capabilities on (delivered by the next mount)",
                                    required=(VM_ID, APPLICATION_NAMES), run=change_applications(enable=True)),
        "disable-applications": Verb("turn capabilities off (delivered by the next mount)",
                                     required=(VM_ID, APPLICATION_NAMES), run=change_applications(enable=False)),
        "bulk-mount": task_verb(
            "mount Guest Tools on many VMs, chosen by uuid or by filter (one parent task, a child per VM)",
            "POST", "/vms/bulk/", required=(), body={"action": "guest-tools-mount"},
            optional=(Key("vm-ids", "UUID[,UUID]", "these VMs", v.listed(v.uuid_text), field="uuids"), *VM_FILTERS,
                      Key("config-only", "BOOL", "only configuration and certificates, for clones whose template "
                                                 "has the agent", v.boolean)),
            shape=bulk_mount_body),
        "get-leader-location": Verb("show the Guest Tools Service leader's host and address", "GET",
                                    "/guest-tools/leader/"),
        "get-ca": Verb("show the cluster's Guest Tools CA certificate and fingerprint (never its key)", "GET",
                       "/guest-tools/ca/"),
    }),
}


VM_OPTION = VMOptionKeys(GUEST_TOOLS_KEYS, guest_tools_body)
