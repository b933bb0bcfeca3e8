"""#cloud-config: YAML checked against cloud-init's own JSON schema (`schema-cloud-config-v1.json` from
Debian's cloud-init package), each finding placed on its line and column through the YAML node tree."""

import json
import os
import re
from functools import cache
from pathlib import Path

import yaml
from django.conf import settings
from jsonschema import Draft4Validator, validators
from jsonschema.exceptions import best_match
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .content import ERROR, WARNING, Validation, position_of

SCHEMA_IN_PACKAGE = "usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json"
MAX_NODES = 100_000  # YAML aliases can make a small text a huge tree ("billion laughs")
MAX_MESSAGE = 300


def cloud_init_dir() -> Path:
    """Where the Makefile unpacks Debian's cloud-init package (FACET_CLOUD_INIT_DIR to move it)."""
    default = Path(settings.BASE_DIR) / "var" / "cache" / "cloud-init"
    return Path(os.environ.get("FACET_CLOUD_INIT_DIR", default))


def schema_path() -> Path | None:
    for root in (cloud_init_dir(), Path("/")):
        candidate = root / SCHEMA_IN_PACKAGE
        if candidate.is_file():
            return candidate
    return None


def _accepts_bytes_as_string(checker, instance) -> bool:
    # As cloud-init does: YAML's !!binary gives bytes where the schema says string.
    return Draft4Validator.TYPE_CHECKER.is_type(instance, "string") or isinstance(instance, bytes)


@cache
def schema_validator(path: Path) -> tuple[Draft4Validator, frozenset[str], bool]:
    """The validator, the top-level keys that cloud-init's modules read, and whether the schema itself
    refuses other top-level keys."""
    schema = json.loads(path.read_text())
    validator_class = validators.extend(
        Draft4Validator, type_checker=Draft4Validator.TYPE_CHECKER.redefine("string", _accepts_bytes_as_string))
    known: set[str] = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        name = part.get("$ref", "").rsplit("/", 1)[-1]
        known.update(schema.get("$defs", {}).get(name, {}).get("properties", {}))
    closed = schema.get("additionalProperties") is False
    return validator_class(schema), frozenset(known), closed


def validate_cloud_config(text: str, result: Validation) -> None:
    root, data = _parse(text, result)
    if root is None:
        return
    if data is None:
        result.add(1, 1, WARNING, "the cloud-config holds nothing after its header")
        return
    if not isinstance(data, dict):
        result.add(*_mark(root), ERROR, f"a cloud-config is a YAML mapping of module keys, not a {_kind(data)}")
        return
    path = schema_path()
    if path is None:
        result.add(1, 1, WARNING, "cloud-init's schema is not installed (make fetches it): only the YAML "
                                  "syntax was checked")
        return
    _check_schema(root, data, *schema_validator(path), result)


def _parse(text: str, result: Validation) -> tuple[Node | None, object]:
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader already refuses control characters
        root = loader.get_single_node()
        if root is None:
            return ScalarNode("tag:yaml.org,2002:null", ""), None
        if not _small_enough(root, result):
            return None, None
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        result.add(mark.line + 1 if mark else 1, mark.column + 1 if mark else 1, ERROR, f"YAML: {detail}")
    except yaml.reader.ReaderError as exc:
        result.add(*position_of(text, exc.position), ERROR,
                   f"YAML: {exc.reason} character {exc.character!r}")
    except yaml.YAMLError as exc:
        result.add(1, 1, ERROR, f"YAML: {exc}")
    except RecursionError:
        result.add(1, 1, ERROR, "YAML: nested too deeply")
    finally:
        if loader is not None:
            loader.dispose()
    return None, None


def _small_enough(root: Node, result: Validation) -> bool:
    """Count the nodes of the tree as it expands; refuse alias bombs and aliases that contain themselves."""
    count, pending, open_nodes = 0, [(root, False)], set()
    while pending:
        node, leaving = pending.pop()
        if leaving:
            open_nodes.discard(id(node))
            continue
        if id(node) in open_nodes:
            result.add(*_mark(node), ERROR, "YAML: an alias refers to a node that contains it")
            return False
        count += 1
        if count > MAX_NODES:
            result.add(1, 1, ERROR, f"YAML: aliases expand the document past {MAX_NODES} nodes")
            return False
        children = _children(node)
        if children:
            open_nodes.add(id(node))
            pending.append((node, True))
            pending.extend((child, False) for child in children)
    return True


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_schema(root: Node, data: dict, validator: Draft4Validator, known: frozenset[str], closed: bool,
                  result: Validation) -> None:
    _warn_duplicate_keys(root, result)
    if not closed:
        for key_node, _ in root.value:
            if isinstance(key_node, ScalarNode) and key_node.value not in known:
                result.add(*_mark(key_node), WARNING, f"unknown key {key_node.value!r}: no cloud-init module reads it")
    for error in validator.iter_errors(data):
        if error.validator == "additionalProperties":
            _warn_unknown_keys(root, error, result)
            continue
        if error.context:
            error = best_match(error.context)
        where = ".".join(str(p) for p in error.absolute_path)
        message = (f"{where}: " if where else "") + error.message
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "…"
        result.add(*_mark(_node_at(root, list(error.absolute_path))), ERROR, message)


def _warn_unknown_keys(root: Node, error, result: Validation) -> None:
    allowed = error.schema.get("properties", {})
    patterns = error.schema.get("patternProperties", {})
    parent = _node_at(root, list(error.absolute_path))
    where = ".".join(str(p) for p in error.absolute_path) or "the top level"
    for key in error.instance:
        if key in allowed or any(re.search(p, str(key)) for p in patterns):
            continue
        node = _node_at(parent, [key]) if isinstance(parent, MappingNode) else parent
        key_node = next((k for k, v in parent.value if v is node), node) if isinstance(parent, MappingNode) else node
        result.add(*_mark(key_node), WARNING, f"unknown key {key!r} in {where}: cloud-init ignores it")


def _warn_duplicate_keys(root: Node, result: Validation) -> None:
    pending = [root]
    seen_nodes: set[int] = set()
    while pending:
        node = pending.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            keys: set[str] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, ScalarNode):
                    if key_node.value in keys:
                        result.add(*_mark(key_node), WARNING, f"key {key_node.value!r} is given twice; the last wins")
                    keys.add(key_node.value)
        pending.extend(_children(node))


def _node_at(node: Node, path: list) -> Node:
    """The deepest node of the YAML tree along a JSON path (as far as the path can be followed)."""
    for part in path:
        if isinstance(node, MappingNode):
            match = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == str(part)), None)
            if match is None:
                return node
            node = match
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _kind(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "scalar")

