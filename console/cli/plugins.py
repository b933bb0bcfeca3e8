"""The other apps' part of the command line. Each app names a module in the `facet.cli` entry-point group
of its package (pyproject.toml), found here without naming the app: its `NOUNS` join the table, and its
`VM_OPTION`, if any, adds keys to `vm create`, `vm clone` and `vm bulk-clone` (as the console's VM options add fields to
those requests)."""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from .spec import Key, Noun

ENTRY_POINTS = "facet.cli"
VM_OPTION_VERBS = ("create", "clone", "bulk-clone", "bulk-clone-plan")


@dataclass(frozen=True)
class VMOptionKeys:
    """Keys an app adds to `vm create` and `vm clone`, and `shape(body)` moving them into its part of the
    request body."""

    keys: tuple[Key, ...]
    shape: Callable[[dict], dict]


def command_table(base: dict[str, Noun]) -> dict[str, Noun]:
    """`base` with every app's nouns and VM option keys; a noun two apps claim is a bug, said at once."""
    nouns = dict(base)
    for entry in sorted(entry_points(group=ENTRY_POINTS), key=lambda entry: entry.name):
        module = entry.load()
        for name, noun in getattr(module, "NOUNS", {}).items():
            if name in nouns:
                raise RuntimeError(f"the command line's noun {name!r} is claimed twice ({entry.value})")
            nouns[name] = noun
        if option := getattr(module, "VM_OPTION", None):
            nouns["vm"] = _with_option(nouns["vm"], option)
    return nouns


def _with_option(vm: Noun, option: VMOptionKeys) -> Noun:
    verbs = dict(vm.verbs)
    for name in VM_OPTION_VERBS:
        verb = verbs[name]
        shape = verb.shape
        verbs[name] = dataclasses.replace(verb, optional=(*verb.optional, *option.keys), shape=(
            option.shape if shape is None else lambda body, shape=shape: option.shape(shape(body))))
    return dataclasses.replace(vm, verbs=verbs)
