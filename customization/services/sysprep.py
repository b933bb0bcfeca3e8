"""Sysprep answer files: unattend.xml parsed without DTDs or entities, its structure checked with line and
column, the guided generator, and the per-VM values (ComputerName from the hostname, `{{ key }}`)."""

import re
import xml.etree.ElementTree as ET  # noqa: S405  (only to build and serialize; parsing goes through defusedxml)
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from console.core.errors import InvalidRequest

from .content import ERROR, INFO, WARNING, Validation

NS = "urn:schemas-microsoft-com:unattend"
WCM = "http://schemas.microsoft.com/WMIConfig/2002/State"
PASSES = ("windowsPE", "offlineServicing", "generalize", "specialize", "auditSystem", "auditUser", "oobeSystem")
ARCHITECTURES = ("x86", "amd64", "arm64", "ia64", "wow64")
COMPUTER_NAME_MAX = 15  # NetBIOS
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# What XML 1.0 cannot hold, even escaped: control characters but tab and newlines, lone surrogates, U+FFFE/FFFF.
UNWRITABLE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def unwritable(value: str) -> str | None:
    """Why an answer file cannot hold this text, or None when it can."""
    found = UNWRITABLE.search(value)
    return None if found is None else (f"holds a character an answer file cannot ({found[0]!r}, character "
                                       f"{found.start() + 1}); give text without control characters")


class _PositionedTree(ET.TreeBuilder):
    """Remembers where each element starts, to report problems at their line and column."""

    def __init__(self) -> None:
        super().__init__()
        self.positions: dict[ET.Element, tuple[int, int]] = {}
        self.expat = None

    def start(self, tag, attrs):
        element = super().start(tag, attrs)
        self.positions[element] = (self.expat.CurrentLineNumber, self.expat.CurrentColumnNumber + 1)
        return element


def parse(text: str, result: Validation) -> tuple[ET.Element | None, dict]:
    """The document's root and element positions, or None with the reason in `result`."""
    tree = _PositionedTree()
    parser = DefusedXMLParser(target=tree, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    tree.expat = parser.parser
    try:
        parser.feed(text)
        return parser.close(), tree.positions
    except DefusedXmlException as exc:
        result.add(parser.parser.CurrentLineNumber, parser.parser.CurrentColumnNumber + 1, ERROR,
                   f"XML: {_refusal(exc)} are not allowed in an answer file")
    except ET.ParseError as exc:
        line, column = exc.position
        result.add(line, column + 1, ERROR, f"XML: {str(exc).split(':')[0]}")
    except (ValueError, RecursionError, MemoryError) as exc:
        result.add(1, 1, ERROR, f"XML: {exc}")
    return None, {}


def _refusal(exc: DefusedXmlException) -> str:
    name = type(exc).__name__
    return {"DTDForbidden": "document type declarations (DTDs)", "EntitiesForbidden": "entity declarations",
            "ExternalReferenceForbidden": "external references"}.get(name, name)


def validate_unattend(text: str, result: Validation) -> None:
    result.format = "sysprep"
    root, positions = parse(text, result)
    if root is None:
        return

    def at(element: ET.Element) -> tuple[int, int]:
        return positions.get(element, (1, 1))

    if root.tag != f"{{{NS}}}unattend":
        result.add(*at(root), ERROR, f"the root element is <unattend xmlns=\"{NS}\">, not <{_plain(root.tag)}>")
        return
    seen: set[str] = set()
    for settings in root:
        if settings.tag != f"{{{NS}}}settings":
            result.add(*at(settings), WARNING, f"<{_plain(settings.tag)}> is not a <settings> element; ignored")
            continue
        name = settings.get("pass")
        if name not in PASSES:
            result.add(*at(settings), ERROR, f"unknown pass {name!r}; use one of {', '.join(PASSES)}")
        elif name in seen:
            result.add(*at(settings), ERROR, f"the {name} pass is configured twice")
        seen.add(name or "")
        for component in settings:
            _check_component(component, at(component), result)
    if not seen:
        result.add(*at(root), WARNING, "the answer file configures no pass")
    for name in root.iter(f"{{{NS}}}ComputerName"):
        value = (name.text or "").strip()
        if value != "*" and not PLACEHOLDER.fullmatch(value) and len(value) > COMPUTER_NAME_MAX:
            result.add(*at(name), ERROR, f"ComputerName {value!r} has {len(value)} characters; Windows allows "
                                         f"{COMPUTER_NAME_MAX} (or give * to take the VM's hostname)")
    for match in PLACEHOLDER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        result.add(line, match.start() - text.rfind("\n", 0, match.start()), INFO,
                   f"{{{{ {match[1]} }}}} is filled from the VM's key-values")


def _check_component(component: ET.Element, where: tuple[int, int], result: Validation) -> None:
    if component.tag != f"{{{NS}}}component":
        result.add(*where, ERROR, f"<{_plain(component.tag)}> in <settings>: only <component> elements go here")
        return
    if not component.get("name"):
        result.add(*where, ERROR, "a component needs its name attribute")
    architecture = component.get("processorArchitecture")
    if architecture is None:
        result.add(*where, ERROR, f"component {component.get('name', '')!r} needs processorArchitecture")
    elif architecture not in ARCHITECTURES:
        result.add(*where, ERROR, f"processorArchitecture {architecture!r}: use one of {', '.join(ARCHITECTURES)}")


def _plain(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def placeholders(text: str) -> set[str]:
    return {m[1] for m in PLACEHOLDER.finditer(text)}


def computer_name_wanted(text: str) -> bool:
    """Whether the answer file leaves ComputerName to us (`*`), as Windows setup would randomize it."""
    return re.search(r"<ComputerName>\s*\*\s*</ComputerName>", text) is not None


def personalize(text: str, hostname: str, key_values: dict[str, str]) -> str:
    """The answer file of one VM: ComputerName `*` becomes its hostname, `{{ key }}` its values."""
    text = re.sub(r"<ComputerName>\s*\*\s*</ComputerName>", f"<ComputerName>{escape(hostname)}</ComputerName>",
                  text)
    return PLACEHOLDER.sub(lambda m: escape(key_values.get(m[1], m[0])), text)


@dataclass
class Answers:
    """The guided mode's fields, as the platform's form has them."""

    computer_name: str = "*"
    admin_password: str = ""
    time_zone: str = "UTC"
    locale: str = "en-US"
    product_key: str = ""
    organization: str = ""
    owner: str = "Facet"
    first_logon_commands: list[str] = field(default_factory=list)
    install_type: str = "prepared"  # fresh: from installation media; prepared: a sysprepped image
    architecture: str = "amd64"


def _component(settings: ET.Element, name: str, architecture: str) -> ET.Element:
    return ET.SubElement(settings, f"{{{NS}}}component", {
        "name": name, "processorArchitecture": architecture, "publicKeyToken": "31bf3856ad364e35",
        "language": "neutral", "versionScope": "nonSxS"})


def _text(parent: ET.Element, path: str, value: str) -> ET.Element:
    element = parent
    for name in path.split("/"):
        element = ET.SubElement(element, f"{{{NS}}}{name}")
    element.text = value
    return element


def _check_writable(answers: Answers) -> None:
    refused = {}
    for name, value in vars(answers).items():
        for text in value if isinstance(value, list) else [value]:
            if reason := unwritable(text):
                refused[name] = [reason]
    if refused:
        raise InvalidRequest(refused)


def generate(answers: Answers) -> str:
    """An unattend.xml from the guided fields; InvalidRequest names a field it cannot hold."""
    _check_writable(answers)
    ET.register_namespace("", NS)
    ET.register_namespace("wcm", WCM)
    root = ET.Element(f"{{{NS}}}unattend")
    arch = answers.architecture
    if answers.install_type == "fresh":
        pe = ET.SubElement(root, f"{{{NS}}}settings", {"pass": "windowsPE"})
        international = _component(pe, "Microsoft-Windows-International-Core-WinPE", arch)
        _text(international, "SetupUILanguage/UILanguage", answers.locale)
        for name in ("InputLocale", "SystemLocale", "UILanguage", "UserLocale"):
            _text(international, name, answers.locale)
        setup = _component(pe, "Microsoft-Windows-Setup", arch)
        _text(setup, "UserData/AcceptEula", "true")
        if answers.product_key:
            _text(setup, "UserData/ProductKey/Key", answers.product_key)
        if answers.organization:
            _text(setup, "UserData/Organization", answers.organization)
    specialize = ET.SubElement(root, f"{{{NS}}}settings", {"pass": "specialize"})
    shell = _component(specialize, "Microsoft-Windows-Shell-Setup", arch)
    _text(shell, "ComputerName", answers.computer_name or "*")
    _text(shell, "TimeZone", answers.time_zone)
    if answers.organization:
        _text(shell, "RegisteredOrganization", answers.organization)
    if answers.product_key and answers.install_type == "prepared":
        _text(shell, "ProductKey", answers.product_key)
    oobe = ET.SubElement(root, f"{{{NS}}}settings", {"pass": "oobeSystem"})
    international = _component(oobe, "Microsoft-Windows-International-Core", arch)
    for name in ("InputLocale", "SystemLocale", "UILanguage", "UserLocale"):
        _text(international, name, answers.locale)
    shell = _component(oobe, "Microsoft-Windows-Shell-Setup", arch)
    _text(shell, "OOBE/HideEULAPage", "true")
    _text(shell, "OOBE/ProtectYourPC", "3")
    _text(shell, "RegisteredOwner", answers.owner)
    if answers.admin_password:
        _text(shell, "UserAccounts/AdministratorPassword/Value", answers.admin_password)
        _text(shell, "UserAccounts/AdministratorPassword/PlainText", "true")
    if answers.first_logon_commands:
        commands = ET.SubElement(shell, f"{{{NS}}}FirstLogonCommands")
        for order, command in enumerate(answers.first_logon_commands, start=1):
            entry = ET.SubElement(commands, f"{{{NS}}}SynchronousCommand", {f"{{{WCM}}}action": "add"})
            _text(entry, "Order", str(order))
            _text(entry, "CommandLine", command)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
