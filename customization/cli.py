"""The `script` noun: the library of saved customization scripts, and checking a script file before a VM
boots with it; and `VM_OPTION`, the keys that give `vm create` and `vm clone` a customization. Found by the
command line through this package's `facet.cli` entry point."""

import base64
from pathlib import Path
from typing import NamedTuple

from console.cli import output as o
from console.cli import values as v
from console.cli.client import Client, credentials
from console.cli.errors import OK, REFUSED, UsageError
from console.cli.plugins import VMOptionKeys
from console.cli.spec import Invocation, Key, Lookup, Noun, Verb

SCRIPTS = "/customization-scripts/"
MAX_FILE_BYTES = 16 * 1024 * 1024  # far above the console's limit; it still says what its limit is


class ScriptFile(NamedTuple):
    path: str
    data: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.data).decode()


def script_file(path: str) -> ScriptFile:
    """A script file's bytes; the console decides whether they are a valid script."""
    try:
        target = Path(path).expanduser()
        if target.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path} is over {MAX_FILE_BYTES // 1024**2} MiB; no script is that large")
        return ScriptFile(path, target.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def kind(value: str) -> str:
    if value not in ("cloud-init", "sysprep"):
        raise ValueError("use cloud-init or sysprep")
    return value


SCRIPT_ID = Key("script-id", "UUID", "the script's uuid", v.uuid_text)
BY_NAME = Lookup(Key("name", "NAME", "the script's exact name, instead of script-id"), target="script-id",
                 path=SCRIPTS, noun="script")
KIND = Key("kind", "KIND", "cloud-init or sysprep", kind)
FILE = Key("file", "PATH", "the script file", script_file)
SCRIPT_TABLE = o.table(("NAME", o.field("name")), ("KIND", o.field("kind")), ("FORMAT", o.field("format")),
                       ("USES", o.field("usage_count")), ("OWNER", o.field("owner")), ("UUID", o.field("uuid")),
                       ("UPDATED", o.when("updated_at")))

# On `vm create` and `vm clone`: the script the new VM first boots with.
CUSTOMIZATION_KEYS = (
    Key("customization", "FILE", "a cloud-init or Sysprep file for the first boot", script_file),
    Key("script", "NAME|UUID", "a saved script for the first boot"),
    Key("datasource", "NAME", "config-drive (default) or nocloud, for cloud-init"),
)


def customization_body(fields: dict) -> dict:
    """Move the customization keys of a vm create/clone body into the API's `customization` object."""
    customization = {}
    if "customization" in fields:
        customization["content_base64"] = fields.pop("customization").base64
    if "script" in fields:
        customization["script"] = fields.pop("script")
    if "datasource" in fields:
        customization["datasource"] = fields.pop("datasource")
    if customization:
        fields["customization"] = customization
    return fields


def create(call: Invocation) -> int:
    login = credentials()
    values = call.values
    try:
        content = values["file"].data.decode()
    except UnicodeDecodeError:
        raise UsageError(f"file: {values['file'].path} is not UTF-8 text; the library keeps scripts as text "
                         "(a gzip file can still be given to vm create with customization=)") from None
    body = {"name": values["name"], "kind": values["kind"], "description": values.get("description", ""),
            "content": content}
    answer = Client(login.url, login.token).request("POST", SCRIPTS, body=body)
    if call.json:
        o.write_json(answer, call.out)
    else:
        o.show_record(answer, call.out)
    return OK


def validate(call: Invocation) -> int:
    """Print the console's findings as `file:line:column: severity: message`, like a compiler."""
    login = credentials()
    body = {"content_base64": call.values["file"].base64}
    if "kind" in call.values:
        body["kind"] = call.values["kind"]
    answer = Client(login.url, login.token).request("POST", f"{SCRIPTS}validate/", body=body)
    if call.json:
        o.write_json(answer, call.out)
    else:
        name = call.values["file"].path
        for problem in answer.get("problems", []):
            call.out.write(f"{name}:{problem['line']}:{problem['column']}: {problem['severity']}: "
                           f"{problem['message']}\n")
        call.out.write(f"{name}: {answer.get('format', '?')}, {'valid' if answer.get('valid') else 'INVALID'}\n")
    return OK if answer.get("valid") else REFUSED


NOUNS: dict[str, Noun] = {
    "script": Noun("saved cloud-init and Sysprep scripts (Viewers see names, not content)", {
        "list": Verb("list saved scripts", "GET", SCRIPTS, optional=(KIND,), present=SCRIPT_TABLE),
        "get": Verb("show a saved script", "GET", SCRIPTS + "{script-id}/", required=(SCRIPT_ID,), lookup=BY_NAME),
        "create": Verb("save a script file in the library", required=(Key("name", "NAME", "the script's name"),
                                                                      KIND, FILE),
                       optional=(Key("description", "TEXT", "what it is for"),), run=create),
        "delete": Verb("delete a saved script", "DELETE", SCRIPTS + "{script-id}/", required=(SCRIPT_ID,),
                       lookup=BY_NAME, present=lambda answer, out: out.write("deleted\n")),
        "validate": Verb("check a script file; exit 1 when it is not valid", required=(FILE,), optional=(KIND,),
                         run=validate),
    }),
}


VM_OPTION = VMOptionKeys(CUSTOMIZATION_KEYS, customization_body)
