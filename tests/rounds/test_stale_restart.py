"""A platform restart its operator knows of (``steward demo`` run again): the watchdog watches afresh at once.

The worker alone notices a pause only past ``WATCH_GAP`` (2 min); a demo restarted 25 s after it stopped
would otherwise call every 15-second sensor silent the moment the worker runs."""

from __future__ import annotations

from datetime import timedelta

from alarms.stale import WATCHING_ALL_ALONG, check_stale, ensure_default_stale_rules, restart_watching, watching_since
from tests.rounds.conftest import at
from tests.rounds.test_stale import seen, stale_alarms
from tests.support.world import RoomsEstate


def test_restart_watching_gives_every_device_a_full_limit(est: RoomsEstate) -> None:
    ensure_default_stale_rules(est.session)
    name = f"stale-restart-{est.code}"
    stopped = at(0)
    assert watching_since(est.session, stopped, name) == WATCHING_ALL_ALONG
    restarted = stopped + timedelta(seconds=40)  # less than WATCH_GAP: the worker would see no gap
    seen(est, "LV1", stopped)  # 15-s interval → 22.5 s limit, silent for 40 s while the platform was down

    # Without the restart the watchdog believes it watched all along and raises at once.
    assert watching_since(est.session, restarted, name) == WATCHING_ALL_ALONG

    restart_watching(est.session, restarted, name)
    since = watching_since(est.session, restarted + timedelta(seconds=5), name)
    assert since == restarted
    check_stale(est.session, restarted + timedelta(seconds=5), watching_since=since)
    assert est.device("LV1").id not in stale_alarms(est)

    # It reports again within its limit: nothing was ever raised.
    seen(est, "LV1", restarted + timedelta(seconds=15))
    check_stale(est.session, restarted + timedelta(seconds=30), watching_since=since)
    assert est.device("LV1").id not in stale_alarms(est)

    # Still silent a full limit after the restart: now it is stale.
    later = restarted + timedelta(seconds=15) + timedelta(seconds=23)
    check_stale(est.session, later, watching_since=watching_since(est.session, later, name))
    assert stale_alarms(est).get(est.device("LV1").id) == "active"


def test_restart_watching_on_a_new_installation_starts_now(est: RoomsEstate) -> None:
    name = f"stale-new-{est.code}"
    restart_watching(est.session, at(0), name)
    assert watching_since(est.session, at(0) + timedelta(seconds=30), name) == at(0)
