"""Names for uuids: keys such as `vm-id=`, `host=`, `image=`, `network=` take a name as well as a uuid, and
the CLI looks each name up in the key's API list before the call (`Key.names`), refusing a name that
matches nothing or more than one object, with the matches."""

from typing import Any

from .client import MAX_PAGE_SIZE, Client
from .errors import Refused
from .spec import Key, Verb
from .values import is_uuid


def resolve_names(client: Client, verb: Verb, given: dict[str, Any]) -> None:
    """Replace the names given for uuids (`vm-id=web-01`, `network=lan,dmz`) by the uuids they name."""
    for key in verb.keys:
        if key.names and key.name in given:
            value = given[key.name]
            if isinstance(value, list):
                given[key.name] = [uuid_of(client, key, item) for item in value]
            else:
                given[key.name] = uuid_of(client, key, value)


def uuid_of(client: Client, key: Key, name: str) -> str:
    """The uuid of the one object named exactly `name` in the key's list; a uuid stays as it is. An
    ambiguous name (two clusters each with a `web-01`) is refused with the matches to choose from."""
    if is_uuid(name):
        return name
    matches = [item for page in client.pages(key.names, {"search": name, "page_size": MAX_PAGE_SIZE})
               for item in page.get("results", []) if item.get("name") == name]
    if not matches:
        raise Refused(f"{key.name}: no {key.noun} is named {name!r}")
    if len(matches) > 1:
        raise Refused(f"{key.name}: {len(matches)} {key.noun}s are named {name!r}; give {key.name}= the uuid of "
                      "one of", [f"{item['uuid']}  {describe(item)}" for item in matches])
    return matches[0]["uuid"]


def describe(item: dict) -> str:
    """What tells apart objects of the same name: where they are."""
    where = [f"{label} {item[field]['name'] if isinstance(item[field], dict) else item[field]}"
             for field, label in (("cluster", "cluster"), ("host", "on host"), ("kind", "kind"), ("vlan", "VLAN"))
             if item.get(field) not in (None, "")]
    return ", ".join(where)
