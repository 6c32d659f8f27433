"""The topic templates of the wire contract (DESIGN.md §4): building and parsing uplink topics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.topics import (
    UPLINK_SUBSCRIPTION,
    Channel,
    TopicError,
    UplinkTopic,
    downlink,
    parse_uplink,
    uplink,
)

# A topic level: anything but the separator (and not empty).
LEVEL = st.text(alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1)


def test_uplink_and_downlink_templates() -> None:
    assert uplink("t1", "T1-S0001", Channel.telemetry) == "steward/t1/up/T1-S0001/telemetry"
    assert uplink("t1", "T1-M0001", "meter") == "steward/t1/up/T1-M0001/meter"
    assert downlink("t1", "T1-AC1", "acl") == "steward/t1/down/T1-AC1/acl"
    assert UPLINK_SUBSCRIPTION == "steward/+/up/+/+"


def test_uplink_refuses_unknown_channel() -> None:
    with pytest.raises(ValueError, match="bogus"):
        uplink("t1", "T1-S0001", "bogus")


@pytest.mark.parametrize("channel", list(Channel))
def test_parse_uplink(channel: Channel) -> None:
    topic = parse_uplink(f"steward/t1/up/T1-S0001/{channel.value}")
    assert topic == UplinkTopic(estate="t1", device="T1-S0001", channel=channel)
    assert str(topic) == f"steward/t1/up/T1-S0001/{channel.value}"


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("", "not an uplink topic"),
        ("steward", "not an uplink topic"),
        ("steward/t1/up/T1-S0001", "not an uplink topic"),  # no channel
        ("steward/t1/up/T1-S0001/telemetry/extra", "not an uplink topic"),  # too deep
        ("other/t1/up/T1-S0001/telemetry", "not an uplink topic"),  # wrong prefix
        ("Steward/t1/up/T1-S0001/telemetry", "not an uplink topic"),  # prefix is case-sensitive
        ("steward/t1/down/T1-S0001/telemetry", "not an uplink topic"),  # a downlink
        ("steward/t1/platform/ingest/telemetry", "not an uplink topic"),
        ("steward//up/T1-S0001/telemetry", "not an uplink topic"),  # empty estate
        ("steward/t1/up//telemetry", "not an uplink topic"),  # empty device
        ("/steward/t1/up/T1-S0001/telemetry", "not an uplink topic"),  # leading slash
        ("steward/t1/up/T1-S0001/", "unknown channel ''"),
        ("steward/t1/up/T1-S0001/Telemetry", "unknown channel 'Telemetry'"),
        ("steward/t1/up/T1-S0001/firmware", "unknown channel 'firmware'"),
    ],
)
def test_parse_uplink_errors(topic: str, message: str) -> None:
    with pytest.raises(TopicError, match=message):
        parse_uplink(topic)


def test_topic_error_is_a_value_error() -> None:
    # ingest catches (TopicError, PayloadError); both must stay ValueErrors for callers that catch those.
    assert issubclass(TopicError, ValueError)


@given(estate=LEVEL, device=LEVEL, channel=st.sampled_from(list(Channel)))
def test_uplink_round_trips(estate: str, device: str, channel: Channel) -> None:
    parsed = parse_uplink(uplink(estate, device, channel))
    assert (parsed.estate, parsed.device, parsed.channel) == (estate, device, channel)


@given(st.text())
def test_parse_uplink_raises_only_topic_error(topic: str) -> None:
    try:
        parsed = parse_uplink(topic)
    except TopicError:
        return
    assert str(parsed) == topic
