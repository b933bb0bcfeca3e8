"""The shapes the command table is made of: a `Noun` has `Verb`s, a verb is one API call (method, path,
required and optional `Key`s) plus how its answer is shown; `Invocation` is one parsed command line."""

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TextIO

from . import values
from .errors import UsageError
from .output import Presenter, Table, show_record

PLACEHOLDER = re.compile(r"\{([a-z0-9-]+)\}")


@dataclass(frozen=True)
class Key:
    """One `key=value` a verb takes: `name` on the command line, `field` in the API (default: the name
    with `_` for `-`), `parse` turns the text into the API's value or raises ValueError saying why."""

    name: str
    sample: str
    help: str
    parse: values.Parser = values.text
    field: str | None = None
    # The API list of what the key names (`/vms/`) when it takes a name as well as a uuid, and what such an
    # object is called in messages: the CLI finds the one object of that exact name before the call.
    names: str = ""
    noun: str = ""

    @property
    def api_name(self) -> str:
        return self.field or self.name.replace("-", "_")

    def read(self, text: str) -> Any:
        try:
            return self.parse(text)
        except ValueError as exc:
            raise UsageError(f"{self.name}: {exc}") from None


@dataclass(frozen=True)
class Lookup:
    """Lets a verb name its object by `alias` (a name) instead of the path key `target` (a uuid): the CLI
    lists `path?search=NAME` and keeps the exact match."""

    alias: Key
    target: str
    path: str
    noun: str


@dataclass(frozen=True)
class Invocation:
    """One command line, parsed and checked: `values` holds the parsed value of every key given."""

    command: str
    verb: "Verb"
    values: dict[str, Any]
    json: bool
    all: bool
    wait: bool
    out: TextIO
    err: TextIO


@dataclass(frozen=True)
class Verb:
    """One API call. Keys named in `path` (`/vms/{vm-id}/`) go into it; the others go into the query of a
    GET or the JSON body of anything else, merged over the fixed `body`, then through `shape` when the API
    wants another form. A `Table` presenter makes a list verb (pages, `--all`); `task=True` says the answer
    is a task (`--wait`). `run` replaces the single call for the few verbs that are more (login, logout)."""

    help: str
    method: str = "GET"
    path: str = ""
    required: tuple[Key, ...] = ()
    optional: tuple[Key, ...] = ()
    body: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    shape: Callable[[dict], dict] | None = None
    present: Presenter = show_record
    task: bool = False
    lookup: Lookup | None = None
    note: Callable[[Any], str] | None = None  # said on stderr after a success, in human mode
    run: Callable[[Invocation], int] | None = None

    @property
    def keys(self) -> tuple[Key, ...]:
        return self.required + self.optional + ((self.lookup.alias,) if self.lookup else ())

    @property
    def lists(self) -> bool:
        return isinstance(self.present, Table)

    @property
    def flags(self) -> tuple[str, ...]:
        return ("--all",) * self.lists + ("--wait",) * self.task

    def usage(self, words: str) -> str:
        required = [f"{k.name}={k.sample}" for k in self.required]
        if self.lookup:
            required = [f"{{{r}|{self.lookup.alias.name}={self.lookup.alias.sample}}}"
                        if r.startswith(self.lookup.target + "=") else r for r in required]
        optional = [f"[{k.name}={k.sample}]" for k in self.optional]
        return " ".join(["facet", words, *required, *optional, *(f"[{flag}]" for flag in self.flags)])

    def request(self, given: dict[str, Any]) -> tuple[str, dict | None]:
        """The path and the query or body of the call, from the parsed values by CLI key name."""
        in_path = set(PLACEHOLDER.findall(self.path))
        path = PLACEHOLDER.sub(lambda m: urllib.parse.quote(str(given[m.group(1)]), safe=""), self.path)
        fields = {**self.body, **{key.api_name: given[key.name] for key in self.keys
                                  if key.name in given and key.name not in in_path}}
        if self.shape is not None:
            fields = self.shape(fields)
        return path, fields or None


@dataclass(frozen=True)
class Noun:
    help: str
    verbs: dict[str, Verb]
