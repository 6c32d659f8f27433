"""Topic templates of the device wire contract (DESIGN.md §4). The only place topics are spelled."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PREFIX = "steward"
UPLINK = PREFIX + "/{estate}/up/{device}/{channel}"
DOWNLINK = PREFIX + "/{estate}/down/{device}/{command}"
PLATFORM_INGEST = PREFIX + "/{estate}/platform/ingest"
# What ingest subscribes to: every estate's uplink, every device and channel.
UPLINK_SUBSCRIPTION = PREFIX + "/+/up/+/+"
PLATFORM_STATE_ALL = PREFIX + "/_all/platform/ingest"
# Ingest partitioned by estate (STEWARD_INGEST_PARTITIONS > 1): each partition's session has its own state
# topic and last will, so one partition going offline does not overwrite the others' state.
PLATFORM_STATE_PARTITION = PREFIX + "/_partition-{partition}/platform/ingest"
# One partition's subscription: every device and channel of one estate.
ESTATE_UPLINK_SUBSCRIPTION = PREFIX + "/{estate}/up/+/+"


def estate_subscription(estate: str) -> str:
    return ESTATE_UPLINK_SUBSCRIPTION.format(estate=estate)


class Channel(StrEnum):
    telemetry = "telemetry"
    meter = "meter"
    swipe = "swipe"
    status = "status"
    ack = "ack"
    door = "door"  # door events without a card: held open, forced open (DoorEventV1)


class TopicError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UplinkTopic:
    estate: str
    device: str
    channel: Channel

    def __str__(self) -> str:
        return UPLINK.format(estate=self.estate, device=self.device, channel=self.channel.value)


def uplink(estate: str, device: str, channel: Channel | str) -> str:
    return UPLINK.format(estate=estate, device=device, channel=Channel(channel).value)


def downlink(estate: str, device: str, command: str) -> str:
    return DOWNLINK.format(estate=estate, device=device, command=command)


def parse_uplink(topic: str) -> UplinkTopic:
    """Split ``steward/{estate}/up/{device}/{channel}``; raise TopicError on anything else."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != PREFIX or parts[2] != "up" or not parts[1] or not parts[3]:
        raise TopicError(f"not an uplink topic: {topic!r}")
    try:
        channel = Channel(parts[4])
    except ValueError:
        raise TopicError(f"unknown channel {parts[4]!r}") from None
    return UplinkTopic(estate=parts[1], device=parts[3], channel=channel)
