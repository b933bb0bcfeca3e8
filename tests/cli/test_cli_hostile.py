"""The `facet` command line against any input (hypothesis): every value parser gives a value or a ValueError
saying how to write it; every verb of the command table (the apps' nouns included) reads any `key=value` words as
a call or a UsageError, and a call it reads makes a request; a size is exactly the bytes it names. Nothing here
reaches a console: a bug would show as exit code 70 with a traceback instead of a usage message."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from console.cli import main, values
from console.cli.errors import UsageError

VERBS = [(f"{noun_name} {verb_name}", verb) for noun_name, noun in main.NOUNS.items()
         for verb_name, verb in noun.verbs.items()] + [(name, verb) for name, verb in main.SESSION.items()]
SIZE_TEXT = st.text(alphabet=st.sampled_from("0123456789 .KMGTPkmgtpiIbB\u212a\u00b2\u0663\uff11e-+_"), max_size=40)
TEXT = SIZE_TEXT | st.text(max_size=40)
PARSERS = [values.text, values.size, values.boolean, values.uuid_text, values.integer(), values.integer(0, 10),
           values.ip_or_auto, values.listed(values.size), values.listed(values.uuid_text)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PARSERS), TEXT)
@example(values.size, "1\u212a")  # the Kelvin sign: "k" to a case-insensitive pattern
@example(values.size, "1" * 30 + ".5G")  # more digits than Decimal's 28
def test_every_value_parser_gives_a_value_or_says_how_to_write_it(parse, text):
    try:
        parse(text)
    except ValueError as exc:
        assert str(exc)


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=0, max_value=10**20, places=3, allow_nan=False, allow_infinity=False),
       st.sampled_from(["", "K", "M", "G", "T", "P", "k", "GiB", "mb"]))
@example(Decimal("1" * 30 + ".5"), "G")
def test_a_size_is_exactly_the_bytes_it_names_or_refused(number, unit):
    exact = Fraction(number) * values.UNITS[unit[:1].upper()]
    try:
        size = values.size(f"{number}{unit}")
    except ValueError:
        assert exact.denominator != 1 or exact <= 0
    else:
        assert size == exact


def words(verb) -> st.SearchStrategy[list[str]]:
    """`key=value` words for a verb: its own keys (valid and odd values), unknown keys, bare words."""
    keys = [key.name for key in verb.keys] or ["name"]
    pair = st.builds(lambda key, value: f"{key}={value}", st.sampled_from(keys) | st.text(max_size=8), TEXT)
    return st.lists(pair | st.text(max_size=12), max_size=6)


@pytest.mark.parametrize(("command", "verb"), VERBS, ids=[command for command, _ in VERBS])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_verb_reads_any_words_as_a_call_or_a_usage_error(command, verb, data):
    args = data.draw(words(verb))
    options = data.draw(st.sets(st.sampled_from(["json", "all", "wait"])))
    try:
        call = main.invocation(command, verb, args, options, None, None)
    except UsageError as exc:
        assert exc.message
        return
    given = dict(call.values)
    if verb.lookup and verb.lookup.alias.name in given:  # as `execute` does, once the name is looked up
        given[verb.lookup.target] = "3f2b9c1e-8d4a-4f1e-9c1a-2b3c4d5e6f70"
        del given[verb.lookup.alias.name]
    try:
        path, _ = verb.request(given)
    except UsageError as exc:  # a verb's shape checks what keys alone cannot (bulk: which VMs)
        assert exc.message
        return
    assert "{" not in path


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12) | st.sampled_from(["--json", "--all", "-h", "--"]), max_size=6))
def test_any_command_line_splits_into_words_and_options_or_a_usage_error(argv):
    try:
        main.split(argv)
    except UsageError as exc:
        assert exc.message
