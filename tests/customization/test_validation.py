"""Format detection and validation: every format, good and bad, each problem at its line and column."""

import gzip
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customization.services import cloud_config, sysprep
from customization.services.validation import validate
from tests.customization.conftest import CLOUD_CONFIG, UNATTEND


def problems(kind: str, content) -> list[tuple[int, int, str, str]]:
    return [(p.line, p.column, p.severity, p.message) for p in validate(kind, content).problems]


def only(kind: str, content) -> tuple[int, int, str, str]:
    found = problems(kind, content)
    assert len(found) == 1, found
    return found[0]


GOOD = [
    ("cloud-config", CLOUD_CONFIG),
    ("cloud-config", "#Cloud-Config\nphone_home: {url: 'http://x/$INSTANCE_ID/', post: all}\n"),
    ("shell-script", "#!/bin/bash\necho hello\n"),
    ("include", "#include\nhttps://example.com/a.yaml\n# a comment\n\nhttp://example.com/b\n"),
    ("include-once", "#include-once\nhttps://example.com/once\n"),
    ("cloud-boothook", "#cloud-boothook\n#!/bin/sh\necho boot\n"),
    ("part-handler", "#part-handler\ndef list_types():\n    return []\n\ndef handle_part(*a):\n    pass\n"),
    ("jinja+cloud-config", "## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n"),
    ("jinja+shell-script", "## template: jinja\n#!/bin/sh\necho plain\n"),
    ("cloud-config-archive", "#cloud-config-archive\n- type: text/cloud-config\n  content: 'a: 1'\n"),
]


@pytest.mark.parametrize(("expected", "content"), GOOD)
def test_good_cloud_init_formats_are_detected_and_valid(expected, content):
    result = validate("cloud-init", content)
    assert result.format == expected
    assert result.valid, result.problems
    assert not [p for p in result.problems if p.severity == "warning"], result.problems


def test_cloud_config_yaml_errors_point_at_the_spot():
    line, column, severity, message = only("cloud-init", "#cloud-config\nusers:\n  - name: bob\n   groups: x\n")
    assert (line, column, severity) == (4, 4, "error") and message.startswith("YAML:")


def test_wrong_type_is_an_error_at_the_value():
    assert only("cloud-init", "#cloud-config\npackages: [vim]\nruncmd: 5\n") == (
        3, 9, "error", "runcmd: 5 is not of type 'array'")


def test_errors_inside_lists_are_placed_on_the_item():
    line, column, severity, message = only("cloud-init", "#cloud-config\nwrite_files:\n  - path: /a\n"
                                                         "    permissions: 644\n")
    assert (line, severity) == (4, "error") and "write_files.0.permissions" in message


def test_unknown_keys_are_warnings_as_cloud_init_reports_them():
    result = validate("cloud-init", "#cloud-config\nruncmd: [ls]\nfrobnicate: true\nphone_home:\n"
                                    "  url: http://x/\n  retries: 3\n")
    assert result.valid
    assert [(p.line, p.column, p.severity) for p in result.problems] == [(3, 1, "warning"), (6, 3, "warning")]
    assert "unknown key 'frobnicate'" in result.problems[0].message
    assert "unknown key 'retries' in phone_home" in result.problems[1].message


def test_duplicate_keys_are_warnings():
    assert only("cloud-init", "#cloud-config\nhostname: a\nhostname: b\n")[:3] == (3, 1, "warning")


def test_a_cloud_config_must_be_a_mapping():
    assert only("cloud-init", "#cloud-config\n- a\n- b\n")[2:] == (
        "error", "a cloud-config is a YAML mapping of module keys, not a list")


def test_yaml_bombs_and_recursive_aliases_are_refused_quickly():
    laughs = "#cloud-config\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
    assert "past 100000 nodes" in only("cloud-init", laughs)[3]
    assert "contains it" in only("cloud-init", "#cloud-config\na: &a [*a]\n")[3]
    assert "nested too deeply" in only("cloud-init", "#cloud-config\na: " + "[" * 20000)[3]


def test_control_characters_are_placed():
    assert only("cloud-init", "#cloud-config\na: \x1f\n")[:3] == (2, 4, "error")


def test_python_tags_are_refused():
    assert "could not determine a constructor" in only("cloud-init", "#cloud-config\na: !!python/name:os.system\n")[3]


def test_without_the_schema_only_yaml_is_checked_and_that_is_said(monkeypatch):
    monkeypatch.setattr(cloud_config, "schema_path", lambda: None)
    assert only("cloud-init", "#cloud-config\nruncmd: 5\n") == (
        1, 1, "warning", "cloud-init's schema is not installed (make fetches it): only the YAML syntax was checked")


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="the Makefile fetches the schema with apt-get")
def test_the_schema_is_debians():
    assert cloud_config.schema_path() is not None, "run make cloud-init-schema (make test does)"


@pytest.mark.parametrize(("content", "expected"), [
    ("#!/bin/bash\r\necho\r\n", (1, 12, "error")),
    ("#!\necho\n", (1, 3, "error")),
    ("#include\nftp://example.com/x\n", (2, 1, "error")),
    ("#include\n", (1, 1, "warning")),
    ("#part-handler\ndef list_types(:\n", (2, 16, "error")),
    ("#part-handler\nx = 1\n", (1, 1, "error")),
    ("## template: jinja\n", (1, 1, "error")),
    ("## template: jinja\nplain text\n", (2, 1, "error")),
    ("hello world\n", (1, 1, "error")),
    ("   \n", (1, 1, "error")),
])
def test_bad_cloud_init_formats(content, expected):
    assert [p[:3] for p in problems("cloud-init", content) if p[2] != "info"][0] == expected


MIME = """Content-Type: multipart/mixed; boundary="XX"
MIME-Version: 1.0

--XX
Content-Type: text/cloud-config

#cloud-config
runcmd: 3
--XX
Content-Type: text/x-shellscript

#!/bin/sh
echo ok
--XX
Content-Type: application/octet-stream

blob
--XX--
"""


def test_mime_parts_are_validated_by_their_content_type_at_their_lines():
    result = validate("cloud-init", MIME)
    assert result.format == "mime-multipart" and not result.valid
    assert [(p.line, p.severity) for p in result.problems] == [(8, "error"), (17, "warning")]
    assert result.problems[0].message == "(text/cloud-config): runcmd: 3 is not of type 'array'"


def test_gzip_is_decompressed_and_bounded():
    assert validate("cloud-init", gzip.compress(CLOUD_CONFIG.encode())).format == "gzip+cloud-config"
    bomb = gzip.compress(b"#cloud-config\n" + b"#" * (10 * 1024 * 1024))
    assert only("cloud-init", bomb) == (1, 1, "error", "the script is over the limit of 64 KiB once decompressed")


def test_size_limit_is_a_setting(settings):
    settings.FACET_CUSTOMIZATION_MAX_BYTES = 100
    assert "over the limit" in only("cloud-init", "#!/bin/sh\n" + "#" * 100)[3]


def test_binary_and_wrong_encoding_are_refused_at_the_byte():
    assert only("cloud-init", b"#!/bin/sh\necho \x00\n") == (
        2, 6, "error", "binary content (NUL byte): give a text script")
    assert only("cloud-init", "#cloud-config\nname: café\n".encode("latin-1"))[:3] == (2, 10, "error")


def test_sysprep_good():
    assert validate("sysprep", UNATTEND).valid
    assert validate("sysprep", UNATTEND).format == "sysprep"


@pytest.mark.parametrize(("content", "expected"), [
    ('<?xml version="1.0"?>\n<!DOCTYPE u [<!ENTITY a "aaaa">]>\n<unattend/>', (2, 13, "error", "DTDs")),
    ('<!DOCTYPE u SYSTEM "file:///etc/passwd"><unattend/>', (1, 40, "error", "DTDs")),
    ("<unattend><settings></unattend>", (1, 23, "error", "mismatched tag")),
    ("<unattend/>", (1, 1, "error", "root element")),
    ('<unattend xmlns="urn:schemas-microsoft-com:unattend"><settings pass="nope"/></unattend>',
     (1, 54, "error", "unknown pass 'nope'")),
    ('<unattend xmlns="urn:schemas-microsoft-com:unattend"><settings pass="specialize">'
     '<component name="x"/></settings></unattend>', (1, 82, "error", "needs processorArchitecture")),
    ('<unattend xmlns="urn:schemas-microsoft-com:unattend"><settings pass="specialize">'
     '<component name="x" processorArchitecture="mips"/></settings></unattend>', (1, 82, "error", "'mips'")),
    ('<unattend xmlns="urn:schemas-microsoft-com:unattend"/>', (1, 1, "warning", "configures no pass")),
])
def test_sysprep_bad(content, expected):
    line, column, severity, message = only("sysprep", content)
    assert (line, column, severity) == expected[:3] and expected[3] in message


def test_xml_bomb_is_refused_without_expanding():
    bomb = '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n' + "".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i else "&lol;" * 10}">\n' for i in range(9)
    ) + ']>\n<unattend>&lol8;</unattend>\n'
    assert "DTDs" in only("sysprep", bomb)[3]


def test_generated_answer_files_validate_and_personalize():
    answers = sysprep.Answers(admin_password="p<&>ss", organization="R&D", product_key="AAAAA-BBBBB-CCCCC-DDDDD-EEEEE",
                              first_logon_commands=["cmd /c echo 1", "powershell -c 2"])
    for install_type in ("prepared", "fresh"):
        answers.install_type = install_type
        text = sysprep.generate(answers)
        assert validate("sysprep", text).problems == [], text
        assert sysprep.computer_name_wanted(text)
    personal = sysprep.personalize(text, "win-1", {})
    assert "<ComputerName>win-1</ComputerName>" in personal and "p&lt;&amp;&gt;ss" in personal
    assert 'pass="windowsPE"' in text and "<Order>2</Order>" in text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048), kind=st.sampled_from(["cloud-init", "sysprep"]))
def test_validation_never_raises_on_arbitrary_bytes(data, kind):
    result = validate(kind, data)
    assert result.format and all(p.line >= 1 and p.column >= 1 for p in result.problems)


HEADERS = ["#cloud-config\n", "#!/bin/sh\n", "#include\n", "## template: jinja\n", "#part-handler\n",
           "Content-Type: multipart/mixed; boundary=B\nMIME-Version: 1.0\n\n--B\n", "<unattend>", ""]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.sampled_from(HEADERS), body=st.text(max_size=1024), kind=st.sampled_from(["cloud-init", "sysprep"]))
def test_validation_never_raises_on_arbitrary_text_after_a_header(header, body, kind):
    result = validate(kind, header + body)
    assert isinstance(result.valid, bool)


def test_the_wrong_kind_is_named():
    assert "choose the kind cloud-init" in only("sysprep", CLOUD_CONFIG)[3]
    assert "choose the kind sysprep" in only("cloud-init", UNATTEND)[3]


MODULE_KEYS = ["runcmd", "packages", "users", "write_files", "phone_home", "ntp", "apt", "bootcmd", "hostname",
               "ssh_authorized_keys", "power_state", "mounts", "frobnicate"]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(MODULE_KEYS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(MODULE_KEYS + ["path", "name",
                                                                                              "url", "content"]),
                                                                inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.dictionaries(st.sampled_from(MODULE_KEYS), VALUES, max_size=6))
def test_schema_findings_are_always_placed_inside_the_text(config):
    text = "#cloud-config\n" + yaml.safe_dump(config)
    lines = text.split("\n")
    for problem in validate("cloud-init", text).problems:
        assert 1 <= problem.line <= len(lines) and 1 <= problem.column <= len(lines[problem.line - 1]) + 1


def test_deep_nesting_of_parts_is_refused_not_a_crash():
    nested = "#!/bin/sh\n"
    for level in range(600):
        nested = (f"Content-Type: multipart/mixed; boundary=b{level}\nMIME-Version: 1.0\n\n--b{level}\n"
                  f"Content-Type: text/plain\n\n{nested}\n--b{level}--\n")
    assert validate("cloud-init", nested).format == "mime-multipart"
    jinja = "## template: jinja\n" * 3000 + "#!/bin/sh\n"
    assert "nests its parts too deeply" in only("cloud-init", jinja)[3]


def test_a_literal_computer_name_is_at_most_15_characters():
    long_name = UNATTEND.replace("<ComputerName>*</ComputerName>", "<ComputerName>a-much-too-long-name</ComputerName>")
    assert only("sysprep", long_name.replace("{{ org }}", "x"))[:3] == (5, 7, "error")
    assert validate("sysprep", UNATTEND.replace("*", "{{ name }}")).valid
