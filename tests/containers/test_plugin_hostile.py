"""The volume plugin's parsers against any input (hypothesis): a request Docker sends (any endpoint, any bytes), the
`docker volume create -o` options and size strings are a value or a ProtocolError, which the plugin answers in
`Err` with nothing done; never another exception (logged as a bug, answered "internal error")."""

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from containers.plugin import protocol

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4), max_leaves=12)
ENDPOINTS = st.sampled_from(sorted(protocol.ENDPOINTS)) | st.text(max_size=30)
NAMES = st.from_regex(protocol.NAME, fullmatch=True) | st.text(max_size=70)
REQUESTS = st.fixed_dictionaries({}, optional={"Name": NAMES | JSON, "ID": st.text(max_size=10) | JSON,
                                               "Opts": JSON | st.dictionaries(st.sampled_from(protocol.OPTIONS),
                                                                             st.text(max_size=12) | JSON)})
# Digits and unit letters of other scripts, which Unicode-aware regular expressions and int() take for ASCII ones.
SIZE_TEXT = st.text(alphabet=st.sampled_from("0123456789 .KMGTkmgtiIbB\u212a\u00b2\u0663\uff11"), max_size=12)


def parsed_or_refused(parse, *args):
    try:
        return parse(*args)
    except protocol.ProtocolError as exc:
        assert str(exc)
        return None


@settings(max_examples=400, deadline=None)
@given(ENDPOINTS, st.binary(max_size=300) | REQUESTS.map(lambda r: json.dumps(r).encode()))
@example("/VolumeDriver.Create", b"[" * 100_000)  # nested past Python's recursion limit
def test_any_request_body_is_a_request_or_a_refusal(endpoint, body):
    request = parsed_or_refused(protocol.parse_request, endpoint, body)
    if request is not None:
        assert isinstance(request, dict)
        for key in protocol.ENDPOINTS[endpoint]:
            assert isinstance(request[key], str) and request[key]


@settings(max_examples=400, deadline=None)
@given(REQUESTS | st.builds(dict, Name=st.just("data"), Opts=st.dictionaries(st.sampled_from(protocol.OPTIONS),
                                                                               SIZE_TEXT | JSON)))
@example({"Name": "data", "Opts": {"sizeMb": "\u00b2"}})  # a digit to str.isdigit(), not to int()
@example({"Name": "data", "Opts": {"size": "1\u212a"}})  # the Kelvin sign: "k" to a case-insensitive pattern
def test_any_create_request_gives_options_or_a_refusal(body):
    """As the plugin reads a create: the request checked, then its options."""
    checked = parsed_or_refused(protocol.parse_request, "/VolumeDriver.Create", json.dumps(body).encode())
    options = checked and parsed_or_refused(protocol.create_options, checked.get("Opts"), "default")
    if options is not None:
        assert options.size_bytes >= protocol.MIN_SIZE and options.fstype in protocol.FSTYPES


@settings(max_examples=400, deadline=None)
@given(SIZE_TEXT | st.text(max_size=12))
@example("1\u212a")
@example("\u0663G")  # an Arabic-Indic three
def test_any_size_is_a_number_of_bytes_or_a_refusal(text):
    size = parsed_or_refused(protocol.parse_size, text)
    if size is not None:
        assert isinstance(size, int) and size >= 0
        assert text.strip()[0] in "0123456789"  # sizes are written in ASCII digits


@given(st.integers(min_value=0, max_value=2**50), st.sampled_from(["", "K", "M", "G", "T", "k", "MiB", "GiB", "tb"]))
def test_a_written_size_reads_back(number, unit):
    multiplier = protocol.UNITS[unit[:1].upper()]
    assert protocol.parse_size(f"{number}{unit}") == number * multiplier
