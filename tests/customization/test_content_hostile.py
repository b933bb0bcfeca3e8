"""Sysprep answer files against any input (hypothesis), beyond the arbitrary bytes of test_validation.py: structured
unattend documents (any elements, attributes, text) validate to findings placed inside the text, never an
exception; the guided generator writes a well-formed answer file or refuses the field it cannot write; a VM's
answer file, personalized with any key-values the request accepts, is as well-formed as its script."""

import xml.etree.ElementTree as ET  # noqa: S405  (builds test documents; parsing is the code under test)

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from console.core.errors import InvalidRequest
from customization.services import lifecycle, sysprep
from customization.services.validation import validate

NS = sysprep.NS
TAGS = st.sampled_from([f"{{{NS}}}{name}" for name in ("unattend", "settings", "component", "ComputerName",
                                                          "UserData", "x")] + ["settings", "other"])
ATTRIBUTES = st.dictionaries(st.sampled_from(["pass", "name", "processorArchitecture", "language"]),
                             st.sampled_from([*sysprep.PASSES, *sysprep.ARCHITECTURES, "", "*", "bogus"]),
                             max_size=3)
# XML can hold neither control characters nor lone surrogates; the documents are made of what it can hold.
XML_TEXT = st.text(st.characters(blacklist_categories=["Cc", "Cs"]) | st.sampled_from("\t\n"), max_size=20)
ANY_TEXT = st.text(max_size=20)
LIMITS = {"suppress_health_check": [HealthCheck.too_slow], "deadline": None}


def element(children: st.SearchStrategy) -> st.SearchStrategy:
    def build(tag, attributes, text, kids):
        made = ET.Element(tag, attributes)
        made.text = text
        made.extend(kids)
        return made

    return st.builds(build, TAGS, ATTRIBUTES, XML_TEXT, children)


DOCUMENTS = st.recursive(element(st.just([])), lambda inner: element(st.lists(inner, max_size=3)), max_leaves=15).map(
    lambda root: ET.tostring(root, encoding="unicode"))


def errors(text: str) -> list[str]:
    return [p.message for p in validate("sysprep", text).errors]


@settings(max_examples=300, **LIMITS)
@given(DOCUMENTS)
def test_any_unattend_document_gives_findings_inside_the_text(text):
    lines = text.split("\n")
    for problem in validate("sysprep", text).problems:
        assert 1 <= problem.line <= len(lines) and 1 <= problem.column <= len(lines[problem.line - 1]) + 1


ANSWERS = st.builds(
    sysprep.Answers, computer_name=st.text(max_size=15) | st.just("*"), admin_password=ANY_TEXT, time_zone=ANY_TEXT,
    locale=ANY_TEXT, product_key=ANY_TEXT, organization=ANY_TEXT, owner=ANY_TEXT,
    first_logon_commands=st.lists(ANY_TEXT, max_size=3), install_type=st.sampled_from(["fresh", "prepared"]),
    architecture=st.sampled_from(sysprep.ARCHITECTURES))


@settings(max_examples=300, **LIMITS)
@given(ANSWERS)
@example(sysprep.Answers(admin_password="pass\x01word"))  # a control character XML cannot hold
def test_the_guided_generator_writes_a_well_formed_answer_file_or_refuses_the_field(answers):
    try:
        text = sysprep.generate(answers)
    except InvalidRequest as refusal:
        assert all(field in {"computer_name", "admin_password", "time_zone", "locale", "product_key",
                             "organization", "owner", "first_logon_commands"} for field in refusal.errors)
        return
    assert not [e for e in errors(text) if e.startswith("XML")]


KEY_VALUES = st.dictionaries(st.from_regex(lifecycle.KEY_PATTERN, fullmatch=True), ANY_TEXT, max_size=4)


@settings(max_examples=300, **LIMITS)
@given(KEY_VALUES, st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True))
@example({"password": "x\x1by"}, "web-1")  # an escape character, as a terminal pastes it
def test_a_vms_answer_file_is_well_formed_whatever_key_values_the_request_accepts(key_values, hostname):
    try:
        accepted = lifecycle.check_key_values(key_values)
    except InvalidRequest:
        return
    script = sysprep.generate(sysprep.Answers(admin_password="{{ password }}", organization="{{ org }}"))
    text = sysprep.personalize(script, hostname, {"password": "", "org": "", **accepted})
    assert errors(text) == []


@pytest.mark.parametrize("value", ["a\x00b", "\x07", "x\ufffe", "\ud800"])
def test_key_values_xml_cannot_hold_are_refused_naming_the_field(value):
    with pytest.raises(InvalidRequest) as refused:
        lifecycle.check_key_values({"password": value})
    assert "password" in refused.value.errors["customization.key_values"][0]
