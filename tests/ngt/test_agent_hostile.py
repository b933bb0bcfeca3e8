"""The agent against a hostile disc and a hostile service: a disc labelled FACET_TOOLS is anyone's to make,
so no link on it is followed, sizes are capped, and its configuration is taken only with the installed CA;
any line from the service is a message or a clean refusal (hypothesis)."""

import json
import os
import ssl
import subprocess
from argparse import Namespace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ngt.agent import __main__ as agent_main
from ngt.agent import config, protocol
from tests.ngt.test_agent import write_media
from tests.realparts import run_coroutine


def installed_key(installed) -> str:
    return (installed / "client.key").read_text()


def test_a_file_on_the_disc_that_links_elsewhere_is_not_read(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret\n")
    media = write_media(tmp_path / "iso")
    (media / "config" / "client.key").unlink()
    (media / "config" / "client.key").symlink_to(secret)  # a Rock Ridge link on a disc someone made
    installed = tmp_path / "etc"
    assert config.discover(media, installed) is None
    assert not (installed / "client.key").exists()

    (media / "config" / "client.key").unlink()
    (media / "config" / "client.key").write_text("client.key of 01\n")
    (media / "config" / "ngt.json").rename(tmp_path / "ngt.json")
    (media / "config" / "ngt.json").symlink_to(tmp_path / "ngt.json")
    assert config.discover(media, installed) is None


def test_a_config_directory_that_links_elsewhere_is_not_read(tmp_path):
    elsewhere = write_media(tmp_path / "elsewhere")
    media = tmp_path / "iso"
    media.mkdir()
    (media / "config").symlink_to(elsewhere / "config")
    assert config.discover(media, tmp_path / "etc") is None


def test_files_over_the_size_limit_or_not_regular_are_not_read(tmp_path):
    media = write_media(tmp_path / "iso")
    ngt_json = media / "config" / "ngt.json"
    ngt_json.write_text(ngt_json.read_text() + " " * config.MAX_FILE)  # valid JSON, too large
    assert config.discover(media, tmp_path / "etc") is None

    media = write_media(tmp_path / "iso-2")
    (media / "config" / "client.pem").unlink()
    os.mkfifo(media / "config" / "client.pem")  # would block a plain read forever
    assert config.discover(media, tmp_path / "etc") is None


def test_a_new_configuration_is_taken_only_with_the_installed_ca(tmp_path):
    installed = tmp_path / "etc"
    assert config.discover(write_media(tmp_path / "first", serial="01"), installed).identity == ("0f3e", "01")

    rogue = write_media(tmp_path / "rogue", vm_uuid="6666", serial="99", ca="an attacker's CA")
    assert config.discover(rogue, installed).identity == ("0f3e", "01")  # ignored: another CA
    assert installed_key(installed) == "client.key of 01\n"
    assert (installed / "ca.pem").read_text() == "the cluster's CA\n"

    clone = write_media(tmp_path / "clone", vm_uuid="77aa", serial="02")  # same CA, a new pair: taken
    assert config.discover(clone, installed).identity == ("77aa", "02")
    assert installed_key(installed) == "client.key of 02\n"


def test_the_ca_is_compared_as_a_certificate_not_as_text(tmp_path):
    ca_pem = tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tmp_path / "ca.key", "-out", ca_pem, "-days", "1", "-subj", "/CN=ca"],
                   check=True, capture_output=True)
    pem = ca_pem.read_bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert config.ca_identity(pem) == config.ca_identity(pem.replace(b"\n", b"\r\n"))
    assert config.ca_identity(ssl.DER_cert_to_PEM_cert(der).encode()) == config.ca_identity(pem)
    assert config.ca_identity(b"not a certificate") != config.ca_identity(pem)


# Any line from the service.

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                           lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                           max_leaves=20)
messages = st.fixed_dictionaries({"type": st.sampled_from(["welcome", "hello_request", "refused", "reply",
                                                           "heartbeat_ack", "get_info", "customization_status",
                                                           "format_disk"]) | st.text()},
                                  optional={"id": json_values | st.text(), "reason": json_values})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=protocol.MAX_LINE + 10) | messages.map(lambda message: json.dumps(message).encode()))
@example(b"[" * 60_000 + b"\n")  # deeper than the JSON parser recurses
@example(b'{"id": "1", "type": "x"}' + b" " * protocol.MAX_LINE)
@example("\ud800".encode("utf-8", "surrogatepass"))
def test_any_line_from_the_service_is_a_message_or_a_clean_refusal(line):
    try:
        message = protocol.decode(line)
    except protocol.ProtocolError:
        return
    assert isinstance(message, dict) and isinstance(message["id"], str) and isinstance(message["type"], str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages)
def test_any_message_from_the_service_is_answered_or_refused(tmp_path, message):
    """The agent's answer to any decoded message: a reply, nothing, or (for `refused`) the session's end."""
    try:
        message = protocol.decode(json.dumps(message).encode())
    except protocol.ProtocolError:
        return
    # No configuration: a freeze is refused (vss-snapshot off) before any fsfreeze could run on this machine.
    agent = agent_main.Agent(Namespace(state_dir=str(tmp_path / "state"), cloud_init_dir=str(tmp_path / "ci"),
                                       media=str(tmp_path / "media"), config_dir=str(tmp_path / "etc"),
                                       fsfreeze_command="false", hooks_dir=str(tmp_path / "hooks.d")))
    agent_config = config.AgentConfig("0f3e", "127.0.0.10", 2074, "c", "01", "", (), "1.0.0", tmp_path)

    async def answer():
        return agent.answer(agent_config, message)

    try:
        answer = run_coroutine(answer())
    except ConnectionRefusedError:
        assert message["type"] == "refused"
        return
    assert answer is None or (answer["type"] in ("reply", "hello") and isinstance(answer["id"], str)
                              and protocol.decode(protocol.encode(answer)) == answer)
