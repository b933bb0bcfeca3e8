"""What a person reads: aligned tables for lists, `Label: value` records for one object, one line per task,
and the task progress (a bar redrawn in place on a terminal, plain percent lines otherwise)."""

import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from .values import format_size

Getter = Callable[[dict], str]


def dig(item: dict, path: str) -> Any:
    """`dig(vm, "host.name")`; None when any step is missing."""
    value: Any = item
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def field(path: str) -> Getter:
    return lambda item: "" if dig(item, path) is None else str(dig(item, path))


def size(path: str) -> Getter:
    return lambda item: format_size(dig(item, path))


def when(path: str) -> Getter:
    """An ISO timestamp as `2026-11-25 20:15:30`, in the server's zone (UTC)."""
    return lambda item: (dig(item, path) or "")[:19].replace("T", " ")


def flag(path: str) -> Getter:
    return lambda item: "yes" if dig(item, path) else ""


def first_paragraph(text: str | None, limit: int | None = None) -> str:
    """A task's error without the traceback the worker appends after a blank line."""
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    return paragraph if limit is None or len(paragraph) <= limit else paragraph[: limit - 1] + "…"


def status_text(task: dict, limit: int = 80) -> str:
    """What a task says about itself: its error when it failed, else its message."""
    text = task.get("error") if task.get("status") == "failed" else task.get("message")
    return first_paragraph(text, limit)


@dataclass(frozen=True)
class Column:
    header: str
    get: Getter


@dataclass(frozen=True)
class Table:
    """How a list verb shows its results; also the sign that the verb pages through a list."""

    columns: tuple[Column, ...]

    def __call__(self, items: list[dict], out: TextIO) -> None:
        rows = [[c.header for c in self.columns]] + [[c.get(item) for c in self.columns] for item in items]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.columns))]
        for row in rows:
            out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def table(*columns: tuple[str, Getter]) -> Table:
    return Table(tuple(Column(header, get) for header, get in columns))


def write_record(pairs: Iterable[tuple[str, Any]], out: TextIO) -> None:
    pairs = list(pairs)
    width = max((len(label) for label, _ in pairs), default=0) + 1
    for label, value in pairs:
        out.write(f"{label + ':':<{width}} {'-' if value in (None, '') else value}".rstrip() + "\n")


def write_json(data: Any, out: TextIO) -> None:
    json.dump(data, out, indent=2)
    out.write("\n")


# Presenters: how the answer of one verb is shown. Each takes the decoded JSON and the output stream.
Presenter = Callable[[Any, TextIO], None]


def show_record(item: dict, out: TextIO) -> None:
    """Any object, field by field; nested values as compact JSON."""
    write_record(((name, value if not isinstance(value, dict | list) else json.dumps(value))
                  for name, value in item.items()), out)


def show_task(task: dict, out: TextIO) -> None:
    """The one line a change answers: what the task does, its uuid, where it is."""
    what = " ".join(filter(None, [task.get("kind"), (task.get("entity") or {}).get("name")]))
    detail = status_text(task)
    out.write(f"{what}: task {task['uuid']} {task['status']}" + (f": {detail}" if detail else "") + "\n")


def show_task_detail(task: dict, out: TextIO) -> None:
    entity = task.get("entity") or {}
    percent = f" {task.get('percent', 0)}%" if task.get("status") == "running" else ""
    write_record([
        ("UUID", task["uuid"]), ("Kind", task.get("kind")),
        ("Entity", " ".join(filter(None, [entity.get("type"), entity.get("name"),
                                          f"({entity['uuid']})" if entity.get("uuid") else ""]))),
        ("Status", f"{task.get('status')}{percent}"), ("Message", task.get("message")),
        ("Error", first_paragraph(task.get("error"))), ("Parent", task.get("parent")),
        ("Created", f"{when('created_at')(task)} by {task.get('created_by') or 'system'}"),
        ("Started", when("started_at")(task)), ("Finished", when("finished_at")(task)),
    ], out)
    children = task.get("children") or []
    if children:
        counts: dict[str, int] = {}
        for child in children:
            counts[child["status"]] = counts.get(child["status"], 0) + 1
        out.write("Children: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + "\n")
        unfinished = [child for child in children if child["status"] != "succeeded"]
        if unfinished:
            table(("  STATUS", lambda c: "  " + c["status"]), ("ENTITY", field("entity_name")),
                  ("MESSAGE", status_text))(unfinished, out)


def show_vm(vm: dict, out: TextIO) -> None:
    host = vm.get("host") or {}
    write_record([
        ("Name", vm["name"]), ("UUID", vm["uuid"]), ("Power state", vm.get("power_state")),
        ("Host", f"{host.get('name')} ({host.get('uuid')})" if host else None), ("Cluster", vm.get("cluster")),
        ("vCPUs", vm.get("vcpus")), ("Memory", format_size(vm.get("memory_bytes"))),
        ("Guest OS", vm.get("guest_os")), ("Template", "yes" if vm.get("is_template") else "no"),
        ("HA", {True: "yes: restarted elsewhere if its host fails", False: "no"}.get(vm.get("high_availability"))),
        ("Hostname", vm.get("hostname")), ("Description", vm.get("description")), ("Parent", vm.get("parent")),
        ("Created", when("created_at")(vm)), ("Updated", when("updated_at")(vm)),
    ], out)
    sections = [
        ("Disks", vm.get("disks"), table(
            ("  INDEX", lambda d: f"  {d['index']}"), ("SIZE", size("size_bytes")), ("FILE", field("file_name")),
            ("BACKING", field("backing_file")))),
        ("NICs", vm.get("nics"), table(
            ("  INDEX", lambda n: f"  {n['index']}"), ("NETWORK", field("network_name")), ("MAC", field("mac")),
            ("IPS", lambda n: ",".join(n.get("ips") or [])))),
        ("CD-ROMs", vm.get("cdroms"), table(
            ("  SLOT", lambda c: f"  {c['slot']}"), ("PURPOSE", field("purpose")),
            ("ISO", lambda c: (c.get("iso_path") or "").rsplit("/", 1)[-1] or "empty"), ("IMAGE", field("image")))),
    ]
    for title, items, layout in sections:
        out.write(f"{title}:" + ("" if items else " none") + "\n")
        if items:
            layout(items, out)


def show_token_created(token: dict, out: TextIO) -> None:
    """Only the key on stdout, so that `TOKEN=$(facet token create name=ci)` works."""
    out.write(token["token"] + "\n")


class Meter:
    """Task progress on stderr: on a terminal, one line redrawn in place; elsewhere a line per change."""

    BAR_WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last: tuple | None = None
        self.drawn = 0

    def update(self, task: dict) -> None:
        percent = max(0, min(100, int(task.get("percent") or 0)))
        if task.get("status") == "succeeded":
            percent = 100
        state = (task.get("status"), percent, status_text(task))
        if state == self.last:
            return
        self.last = state
        if self.tty:
            filled = percent * self.BAR_WIDTH // 100
            line = f"[{'#' * filled}{'.' * (self.BAR_WIDTH - filled)}] {percent:3d}% {state[0]}"
            line += f": {state[2]}" if state[2] else ""
            line = line[: max(20, shutil.get_terminal_size().columns - 1)]
            self.stream.write("\r" + line.ljust(self.drawn))
            self.drawn = len(line)
        else:
            self.stream.write(f"{percent:3d}% {state[0]}" + (f": {state[2]}" if state[2] else "") + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = 0
