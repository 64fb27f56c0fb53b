"""go-discover entries: its parser's documented examples, provider checks at load."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wanfedtx.config import ConfigError, LoadResult
from wanfedtx.config.discover import (
    MDNS_NO_SERVICE,
    DiscoverError,
    MDNSQuery,
    classify,
    format_config,
    mdns_query,
    parse,
)

# go-discover's config_test.go TestConfigParse table, happy flows and errors, word for word.
PARSE_OK = [
    ("", {}),
    ("key=a", {"key": "a"}),
    ("key=a key2=b", {"key": "a", "key2": "b"}),
    ("key=a+b key2=c/d", {"key": "a+b", "key2": "c/d"}),
    (" key=a    key2=b ", {"key": "a", "key2": "b"}),
    (" key = a   key2 = b ", {"key": "a", "key2": "b"}),
    (r'  "k e \\\" y" = "a \" b" key2=c', {r"k e \" y": 'a " b', "key2": "c"}),
    (
        'secret_access_key="fpOfcHQJAQBczjAxiVpeyLmX1M0M0KPBST+GU2GvEN4="',
        {"secret_access_key": "fpOfcHQJAQBczjAxiVpeyLmX1M0M0KPBST+GU2GvEN4="},
    ),
    (
        'project_name=Test zone_pattern=us-(?west|east).+ tag_value="consul server" '
        "credentials_file=xxx",
        {
            "project_name": "Test",
            "zone_pattern": "us-(?west|east).+",
            "tag_value": "consul server",
            "credentials_file": "xxx",
        },
    ),
    # the README's examples
    ("provider=mdns service=consul domain=local",
     {"provider": "mdns", "service": "consul", "domain": "local"}),
    ('provider=k8s label_selector="app = consul-server"',
     {"provider": "k8s", "label_selector": "app = consul-server"}),
    ('key=val "some key"="some value"', {"key": "val", "some key": "some value"}),
]

PARSE_ERRORS = [
    ("provider=aws foo", "foo: missing '='"),
    ("key", "key: missing '='"),
    ("key=", "key: missing value"),
    ('key="a', "key: unbalanced quotes"),
    ('key="\\', "key: unterminated escape sequence"),
    ("key=a key=b", "key: duplicate key"),
    ("key key2", "key: missing '='"),
    (
        "secret_access_key=fpOfcHQJAQBczjAxiVpeyLmX1M0M0KPBST+GU2GvEN4=",
        "secret_access_key: - equals in key's value, enclosing double-quote needed "
        'secret_access_key="value-with-=-symbol"',
    ),
]


@pytest.mark.parametrize(("text", "want"), PARSE_OK)
def test_parse_documented_examples(text: str, want: dict[str, str]) -> None:
    assert parse(text) == want


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors_word_for_word(text: str, message: str) -> None:
    with pytest.raises(DiscoverError) as exc:
        parse(text)
    assert str(exc.value) == message


# go-discover's TestConfigString and TestConfigRoundTrip tables.
@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("", ""),
        ("   ", ""),
        ('b=c "a a"="b b"', '"a a"="b b" b=c'),
        ("a=b provider=foo x=y", "provider=foo a=b x=y"),
        (
            'provider=k8s namespace=vault label_selector="app.kubernetes.io/name=vault,'
            'component=server"',
            'provider=k8s label_selector="app.kubernetes.io/name=vault,component=server" '
            "namespace=vault",
        ),
    ],
)
def test_format_is_stable(text: str, out: str) -> None:
    assert format_config(parse(text)) == out


@pytest.mark.parametrize(
    "text",
    [
        '"a a"="b b" b=c',
        "provider=foo a=b x=y",
        r'"k e \\\" y"="a \" b" key2=c',
        'secret_access_key="fpOfcHQJAQBczjAxiVpeyLmX1M0M0KPBST+GU2GvEN4="',
        'credentials_file=xxx project_name=Test tag_value="consul server" '
        "zone_pattern=us-(?west|east).+",
    ],
)
def test_round_trip(text: str) -> None:
    assert format_config(parse(format_config(parse(text)))) == text


def test_mdns_options_and_defaults() -> None:
    assert mdns_query({"service": "consul"}) == MDNSQuery("consul", "local", 5.0, True, True)
    q = mdns_query({"service": "_gw._tcp", "domain": "lan", "timeout": "250ms", "v6": "false",
                    "v4": "T"})
    assert q == MDNSQuery("_gw._tcp", "lan", 0.25, False, True)
    with pytest.raises(DiscoverError) as exc:
        mdns_query({"domain": "local"})
    assert str(exc.value) == MDNS_NO_SERVICE
    with pytest.raises(DiscoverError, match="Failed to parse v4"):
        mdns_query({"service": "x", "v4": "yes"})
    with pytest.raises(DiscoverError, match="Failed to parse timeout"):
        mdns_query({"service": "x", "timeout": "soon"})


def test_classify_sorts_addresses_mdns_and_skipped() -> None:
    found = classify([
        "10.0.0.1:4431",
        "provider=aws tag_key=consul tag_value=server",
        "provider=mdns service=consul",
        "provider=gce project_name=p",
    ])
    assert found.addresses == ("10.0.0.1:4431",)
    assert found.mdns == (MDNSQuery("consul"),)
    assert found.skipped == ("aws", "gce")
    assert classify(["provider=aws region=x"]).usable is False
    with pytest.raises(DiscoverError, match=r"^discover: unknown provider nope$"):
        classify(["provider=nope a=b"])
    with pytest.raises(DiscoverError, match=r"^discover: no provider$"):
        classify(["xprovider=z"])  # contains "provider=", so it goes to go-discover
    with pytest.raises(DiscoverError, match=r"^discover: key: missing value$"):
        classify(["provider=aws key="])


SECONDARY = """
datacenter = "two"
primary_datacenter = "one"
server = true
"""


def test_unsupported_providers_are_named_in_one_warning_at_load(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    res = loadcfg(write("c.hcl", SECONDARY + """
retry_join = ["10.0.0.1", "provider=aws tag_key=consul tag_value=server"]
retry_join_wan = ["provider=mdns service=consul", "provider=azure tag_name=x"]
primary_gateways = ["gw.example:443", "provider=aws region=eu-west-1"]
"""))
    mine = [w for w in res.warnings if "auto-join" in w]
    assert mine == [
        "cloud auto-join providers that wanfedtx cannot run are skipped: aws (in retry_join, "
        "primary_gateways); azure (in retry_join_wan); supported: mdns"
    ]
    # the entries stay as written; the agent skips the providers it cannot run
    assert res.runtime.primary_gateways == ("gw.example:443", "provider=aws region=eu-west-1")


@pytest.mark.parametrize(
    ("hcl", "message"),
    [
        (
            'primary_gateways = ["provider=aws region=eu-west-1", "provider=gce project_name=p"]',
            "primary_gateways: every entry uses a cloud auto-join provider that wanfedtx cannot "
            "run (aws, gce); give host:port addresses or provider=mdns",
        ),
        (
            'retry_join = ["provider=aws tag_key=consul"]',
            "retry_join: every entry uses a cloud auto-join provider that wanfedtx cannot run "
            "(aws); give host:port addresses or provider=mdns",
        ),
        ('retry_join = ["provider=mdns"]', "retry_join: " + MDNS_NO_SERVICE),
        ('retry_join = ["provider=aws tag_key"]', "retry_join: discover: tag_key: missing '='"),
        ('retry_join_wan = ["provider=cloudy"]', "retry_join_wan: discover: unknown provider "
         "cloudy"),
    ],
)
def test_a_config_that_cannot_join_is_an_error_at_load(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str], hcl: str, message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        loadcfg(write("c.hcl", SECONDARY + hcl))
    text = str(exc.value)
    assert message in text
    assert "\n" not in text and "Traceback" not in text
