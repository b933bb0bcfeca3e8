"""`facet NOUN VERB key=value ... [--json] [--all] [--wait]`: read the command line against the table in
`commands.py`, make the call, show the answer; every failure ends with the exit code of its kind."""

import os
import sys
import textwrap
import time
import traceback
from typing import Any, TextIO

from . import output as o
from .client import MAX_PAGE_SIZE, ApiRefused, Client, credentials
from .commands import NOUNS as VM_AND_INVENTORY_NOUNS
from .commands import SESSION
from .errors import BUG, EXIT_CODES, INTERRUPTED, OK, USAGE, CliError, Interrupted, Refused, TaskFailed, UsageError
from .names import resolve_names
from .plugins import command_table
from .spec import Invocation, Lookup, Verb

# Every noun: the VM and inventory table, then each app's own (they build on the first, so they are
# merged here rather than in commands.py).
NOUNS = command_table(VM_AND_INVENTORY_NOUNS)

POLL_SECONDS = 0.5
ENDED = ("succeeded", "failed", "cancelled")
OPTIONS = {"--json": "json", "--all": "all", "--wait": "wait", "--help": "help", "-h": "help"}
WIDTH = 100


def main(argv: list[str] | None = None) -> int:
    """The `facet` console script; returns the exit code (see `facet --help`)."""
    out, err = sys.stdout, sys.stderr
    try:
        return run(sys.argv[1:] if argv is None else list(argv), out, err)
    except CliError as exc:
        err.write(f"facet: {exc.message}\n" + "".join(f"{line}\n" for line in exc.lines))
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("\nfacet: interrupted\n")
        return INTERRUPTED
    except BrokenPipeError:  # `facet vm list --all | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except Exception:  # a bug here must not pass for one of the documented outcomes (1 would read as "refused")
        traceback.print_exc(file=err)
        return BUG


def run(argv: list[str], out: TextIO, err: TextIO) -> int:
    words, options = split(argv)
    if not words or words[0] == "help":
        asked = bool(words) or "help" in options  # a bare `facet` is a usage error that shows the help
        return show_help(words[1:], out if asked else err, ok=asked)
    noun_name = words[0]
    if noun_name in SESSION:
        command, verb, args = noun_name, SESSION[noun_name], words[1:]
    elif noun_name in NOUNS:
        noun = NOUNS[noun_name]
        if len(words) < 2 or "=" in words[1]:
            if "help" in options:
                return show_help([noun_name], out)
            raise UsageError(f"give a verb after {noun_name!r}: {', '.join(noun.verbs)} (facet {noun_name} --help)")
        if words[1] not in noun.verbs:
            raise UsageError(f"unknown verb {words[1]!r} for {noun_name}; choose one of: {', '.join(noun.verbs)}")
        command, verb, args = f"{noun_name} {words[1]}", noun.verbs[words[1]], words[2:]
    else:
        raise UsageError(f"unknown noun {noun_name!r}; choose one of: {', '.join([*NOUNS, *SESSION])} (facet --help)")
    if "help" in options:
        out.write(verb_help(command, verb))
        return OK
    call = invocation(command, verb, args, options, out, err)
    return verb.run(call) if verb.run else execute(call)


def split(argv: list[str]) -> tuple[list[str], set[str]]:
    """Words (noun, verb, key=value) apart from options, which may come anywhere."""
    words, options = [], set()
    for arg in argv:
        if arg.startswith("-"):
            if arg not in OPTIONS:
                raise UsageError(f"unknown option {arg!r}; options are {', '.join(OPTIONS)}")
            options.add(OPTIONS[arg])
        else:
            words.append(arg)
    return words, options


def invocation(command: str, verb: Verb, args: list[str], options: set[str], out: TextIO,
               err: TextIO) -> Invocation:
    """Check the keys against the verb and parse their values; any mistake is a UsageError naming it."""
    for option in ("all", "wait"):
        if option in options and f"--{option}" not in verb.flags:
            raise UsageError(f"--{option} does not apply to facet {command}")
    known = {key.name: key for key in verb.keys}
    given: dict[str, Any] = {}
    for arg in args:
        name, equals, text = arg.partition("=")
        if not equals:
            raise UsageError(f"expected key=value, got {arg!r}: {verb.usage(command)}")
        if name not in known:
            raise UsageError(f"unknown key {name!r} for facet {command}; valid keys: {', '.join(known) or 'none'}")
        if name in given:
            raise UsageError(f"key {name!r} is given twice")
        given[name] = known[name].read(text)
    lookup = verb.lookup
    if lookup and lookup.alias.name in given and lookup.target in given:
        raise UsageError(f"give {lookup.target} or {lookup.alias.name}, not both")
    missing = [key.name for key in verb.required
               if key.name not in given and not (lookup and lookup.target == key.name and lookup.alias.name in given)]
    if missing:
        raise UsageError(f"missing required key {', '.join(missing)}: {verb.usage(command)}")
    return Invocation(command, verb, given, "json" in options, "all" in options, "wait" in options, out, err)


def execute(call: Invocation) -> int:
    """One verb of the table: make the call, then show the answer, or page through it, or wait for it."""
    verb = call.verb
    login = credentials()
    client = Client(login.url, login.token)
    given = dict(call.values)
    if verb.lookup and verb.lookup.alias.name in given:
        given[verb.lookup.target] = resolve(client, verb.lookup, given.pop(verb.lookup.alias.name))
    resolve_names(client, verb, given)
    path, fields = verb.request(given)
    try:
        if verb.lists:
            return show_list(call, client, path, fields or {})
        if verb.method == "GET":
            answer = client.request("GET", path, query=query_form(fields or {}))
        else:
            answer = client.request(verb.method, path, body=fields)
    except ApiRefused as exc:
        exc.rename_fields({key.api_name: key.name for key in verb.keys})
        raise
    if call.wait:
        return wait(call, client, answer)
    show(call, answer, note=True)
    return OK


def query_form(fields: dict) -> dict:
    """Booleans as the API's filters read them."""
    return {name: str(value).lower() if isinstance(value, bool) else value for name, value in fields.items()}


def show(call: Invocation, answer: Any, note: bool) -> None:
    if call.json:
        o.write_json(answer, call.out)
        return
    call.verb.present(answer, call.out)
    if note and call.verb.note:
        call.err.write(call.verb.note(answer) + "\n")


def show_list(call: Invocation, client: Client, path: str, fields: dict) -> int:
    query = query_form(fields)
    if call.all:
        query.setdefault("page_size", MAX_PAGE_SIZE)
    pages = client.pages(path, query) if call.all else iter([client.request("GET", path, query=query)])
    first: dict = {}
    items: list[dict] = []
    for page in pages:
        first = first or page
        items += page.get("results", [])
    if call.json:
        o.write_json({**first, "next": None, "previous": None, "results": items} if call.all else first, call.out)
        return OK
    call.verb.present(items, call.out)
    if not items:
        call.err.write("(nothing matches)\n")
    elif first.get("next") and not call.all:
        call.err.write(f"({len(items)} of {first['count']} shown: add --all for every page, or page-size=N)\n")
    return OK


def resolve(client: Client, lookup: Lookup, name: str) -> str:
    """The uuid of the one object named exactly `name`."""
    matches = [item["uuid"] for page in client.pages(lookup.path, {"search": name, "page_size": MAX_PAGE_SIZE})
               for item in page.get("results", []) if item.get("name") == name]
    if not matches:
        raise Refused(f"no {lookup.noun} is named {name!r}")
    if len(matches) > 1:
        raise Refused(f"{len(matches)} {lookup.noun}s are named {name!r}; give {lookup.target}= one of",
                      matches)
    return matches[0]


def pause(seconds: float) -> None:
    time.sleep(seconds)


def wait(call: Invocation, client: Client, task: dict) -> int:
    """Poll the task until it ends, with its progress on stderr; exit 4 unless it succeeded."""
    meter = o.Meter(call.err)
    try:
        while task["status"] not in ENDED:
            meter.update(task)
            pause(POLL_SECONDS)
            task = client.request("GET", f"/tasks/{task['uuid']}/")
        meter.update(task)
    except KeyboardInterrupt:
        raise Interrupted(f"stopped waiting; the task goes on: facet task get task-id={task['uuid']} --wait") \
            from None
    finally:
        meter.close()
    show(call, task, note=False)
    if task["status"] != "succeeded":
        error = o.first_paragraph(task.get("error"))
        raise TaskFailed(f"task {task['uuid']} {task['status']}", [error] if error else [])
    return OK


# Help, made from the table.

def show_help(topic: list[str], stream: TextIO, ok: bool = True) -> int:
    if not topic:
        stream.write(general_help())
    elif topic[0] in NOUNS and len(topic) == 1:
        stream.write(noun_help(topic[0]))
    elif topic[0] in NOUNS and topic[1] in NOUNS[topic[0]].verbs:
        stream.write(verb_help(" ".join(topic[:2]), NOUNS[topic[0]].verbs[topic[1]]))
    elif topic[0] in SESSION:
        stream.write(verb_help(topic[0], SESSION[topic[0]]))
    else:
        raise UsageError(f"no help on {' '.join(topic)!r}; see facet --help")
    return OK if ok else USAGE


def wrap(text: str, indent: int) -> str:
    return textwrap.fill(text, WIDTH, subsequent_indent=" " * indent, break_on_hyphens=False,
                         break_long_words=False)


def general_help() -> str:
    nouns = [wrap(f"  {name:<19}{noun.help}: {', '.join(noun.verbs)}", 21) for name, noun in NOUNS.items()]
    session = [wrap(f"       {verb.usage(name)}", 13) for name, verb in SESSION.items()]
    exits = [wrap(f"  {code:<3} {text}", 6) for code, text in EXIT_CODES]
    return "\n".join([
        "usage: facet NOUN VERB [key=value ...] [--json] [--all] [--wait]",
        *session,
        "",
        "The command-line client of the Facet console: it speaks the REST API under /api/v1/ with an API token.",
        "",
        "Nouns and their verbs (facet NOUN --help, facet NOUN VERB --help for their keys):",
        *nouns,
        "",
        "Options, anywhere on the line:",
        "  --json     print the API's JSON instead of tables (with --all: one page holding every result)",
        "  --all      list verbs: follow every page instead of showing the first",
        "  --wait     verbs that start a task, and task get: follow the task to its end, progress on stderr",
        "  -h, --help this help",
        "",
        "Values: sizes as 512M, 10G, 1T (binary: K = 1024 bytes); booleans as true or false; lists with commas.",
        "",
        "Credentials: FACET_URL and FACET_TOKEN, else the file `facet login` writes:",
        "$XDG_CONFIG_HOME/facet/config.json, or ~/.config/facet/config.json (mode 0600). The variables win.",
        "",
        "Exit codes:",
        *exits,
        "",
    ])


def noun_help(name: str) -> str:
    noun = NOUNS[name]
    lines = [f"facet {name}: {noun.help}", "", "Verbs:"]
    for verb_name, verb in noun.verbs.items():
        lines += [wrap(f"  {verb_name:<12}{verb.help}", 14), wrap("      " + verb.usage(f"{name} {verb_name}"), 10)]
    return "\n".join([*lines, "", f"facet {name} VERB --help tells each key; exit codes are in facet --help.", ""])


def verb_help(command: str, verb: Verb) -> str:
    width = max((len(f"{k.name}={k.sample}") for k in verb.keys), default=0) + 4
    marks = {k.name: "(required) " for k in verb.required}
    if verb.lookup:
        marks[verb.lookup.target] = f"(required, or {verb.lookup.alias.name}=) "
    keys = [wrap(f"  {k.name + '=' + k.sample:<{width}}{marks.get(k.name, '')}{k.help}", width + 2)
            for k in verb.keys]
    flags = {"--all": "follow every page", "--wait": "follow the task to its end (exit 4 if it fails)"}
    lines = ["usage: " + wrap(verb.usage(command), 13), "", verb.help[:1].upper() + verb.help[1:] + "."]
    if keys:
        lines += ["", "Keys:", *keys]
    lines += ["", "Options:", *(f"  {flag:<8}{flags[flag]}" for flag in verb.flags),
              "  --json  print the API's JSON answer", ""]
    return "\n".join(lines)
