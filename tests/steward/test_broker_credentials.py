"""`steward devices credentials`: Mosquitto password files the real broker accepts, the ACL and the sheet.

The hashes are computed in Python (no mosquitto_passwd needed where the command runs); the broker is the
judge: the shipped configuration (tests/support/deploy_broker.py) is started with the written files.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steward.broker_credentials import check_password, hash_password
from tests.conftest import require_mosquitto
from tests.e2e.test_broker_acl import Client
from tests.support.deploy_broker import deploy_broker

TINY = """\
estate: {code: tiny, name: Tiny, timezone: Asia/Shanghai}
buildings:
  - {code: "1", name: B1, floors: 1, entrances: 1, units_per_floor: 2}
unit_meters:
  - {kind: cold_water_meter, code: "CW-{unit}", register_max: "99999.999", resolution: "0.001",
     expected_interval_s: 60}
"""
PLATFORM_PW = "platform-secret-for-tests"


def credentials(out: Path, *args: str, platform_pw: str = PLATFORM_PW) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
    env |= {"STEWARD_MQTT_PASSWORD": platform_pw, "STEWARD_MQTT_USERNAME": "steward-platform"}
    cmd = [sys.executable, "-m", "steward", "devices", "credentials", "--output", str(out), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def sheet(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["username"]: row for row in csv.DictReader(fh)}


def test_hash_is_mosquitto_passwd_format_both_ways(tmp_path: Path) -> None:
    """Ours checks a hash mosquitto_passwd wrote (when the tool is here); the broker test checks the reverse."""
    ours = hash_password("s3cret", salt=b"0123456789ab")
    assert ours.startswith("$7$101$MDEyMzQ1Njc4OWFi$")
    assert check_password("s3cret", ours)
    assert not check_password("s3cret!", ours)
    tool = subprocess.run(["which", "mosquitto_passwd"], capture_output=True, text=True, check=False).stdout.strip()
    if not tool:
        pytest.skip("no mosquitto_passwd to compare with")
    path = tmp_path / "p"
    path.touch()
    subprocess.run([tool, "-b", str(path), "u", "s3cret"], check=True)
    theirs = path.read_text().strip().split(":", 1)[1]
    assert check_password("s3cret", theirs)
    assert not check_password("other", theirs)


def test_credentials_from_an_estate_file_are_accepted_by_mosquitto(tmp_path: Path) -> None:
    estate = tmp_path / "tiny.yaml"
    estate.write_text(TINY)
    out = tmp_path / "secrets"
    done = credentials(out, "--estate-file", str(estate), "--gateway", "sim-tiny=tiny")
    assert done.returncode == 0, done.stdout + done.stderr

    rows = sheet(out / "devices.csv")
    assert sorted(rows) == ["CW-1-1-101", "CW-1-1-102", "sim-tiny"]
    assert {r["kind"] for u, r in rows.items() if u != "sim-tiny"} == {"device"}
    assert rows["sim-tiny"]["kind"] == "gateway"
    assert len({r["password"] for r in rows.values()}) == 3  # each its own secret
    assert (out / "devices.csv").stat().st_mode & 0o077 == 0  # passwords in clear: owner only
    passwd = (out / "passwd").read_text()
    assert all(r["password"] not in passwd for r in rows.values())
    assert (out / "platform-passwd").read_text().startswith("steward-platform:$7$")
    acl = (out / "acl").read_text()
    assert "user CW-1-1-101\ntopic write steward/tiny/up/CW-1-1-101/#" in acl
    assert "user sim-tiny\ntopic write steward/tiny/up/#" in acl

    broker = deploy_broker(require_mosquitto(), tmp_path / "broker", devices={}, platform={})
    for name in ("passwd", "platform-passwd", "acl"):  # the files the command wrote, as compose mounts them
        (broker.directory / name).write_text((out / name).read_text())
    broker.start()
    clients = []
    try:
        platform = Client(broker.platform_port, "steward-platform", PLATFORM_PW)
        device = Client(broker.device_port, "CW-1-1-101", rows["CW-1-1-101"]["password"])
        gateway = Client(broker.device_port, "sim-tiny", rows["sim-tiny"]["password"])
        wrong = Client(broker.device_port, "CW-1-1-102", rows["CW-1-1-101"]["password"])
        device_on_platform = Client(broker.platform_port, "CW-1-1-101", rows["CW-1-1-101"]["password"])
        clients = [platform, device, gateway, wrong, device_on_platform]
        assert platform.connected.is_set()
        assert device.connected.is_set()
        assert gateway.connected.is_set()
        assert not wrong.connected.is_set()
        assert not device_on_platform.connected.is_set()  # device accounts never open the platform listener

        platform.subscribe("steward/+/up/#")
        device.publish("steward/tiny/up/CW-1-1-101/meter", b"own")
        device.publish("steward/tiny/up/CW-1-1-102/meter", b"as another")  # dropped by the ACL
        gateway.publish("steward/tiny/up/CW-1-1-102/meter", b"via gateway")
        time.sleep(0.5)
        assert platform.received == [
            ("steward/tiny/up/CW-1-1-101/meter", b"own"),
            ("steward/tiny/up/CW-1-1-102/meter", b"via gateway"),
        ]
    finally:
        for c in clients:
            c.close()
        broker.kill()


def test_rerun_keeps_passwords_and_adds_new_devices(tmp_path: Path) -> None:
    estate = tmp_path / "tiny.yaml"
    estate.write_text(TINY)
    out = tmp_path / "secrets"
    assert credentials(out, "--estate-file", str(estate)).returncode == 0
    before = sheet(out / "devices.csv")
    estate.write_text(TINY.replace("units_per_floor: 2", "units_per_floor: 3"))
    assert credentials(out, "--estate-file", str(estate)).returncode == 0
    after = sheet(out / "devices.csv")
    assert sorted(after) == ["CW-1-1-101", "CW-1-1-102", "CW-1-1-103"]
    assert {u: after[u]["password"] for u in before} == {u: r["password"] for u, r in before.items()}


def test_credentials_need_the_platform_password(tmp_path: Path) -> None:
    estate = tmp_path / "tiny.yaml"
    estate.write_text(TINY)
    done = credentials(tmp_path / "out", "--estate-file", str(estate), platform_pw="")
    assert done.returncode != 0
    assert "STEWARD_MQTT_PASSWORD" in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()


def test_credentials_from_the_database(fresh_database: str, tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "examples" / "estate.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")} | {
        "STEWARD_DATABASE_URL": fresh_database
    }
    imported = subprocess.run(
        [sys.executable, "-m", "steward", "estate", "import", str(sample)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    env |= {"STEWARD_MQTT_PASSWORD": PLATFORM_PW}
    cmd = [sys.executable, "-m", "steward", "devices", "credentials", "--output", str(tmp_path / "db")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = sheet(tmp_path / "db" / "devices.csv")
    assert len(rows) > 300
    assert {r["estate"] for r in rows.values()} == {"lvyuan"}
    assert len((tmp_path / "db" / "passwd").read_text().splitlines()) == len(rows)


def test_simulate_logs_in_with_username_and_password(tmp_path: Path) -> None:
    """`steward simulate --username/--password` against the shipped configuration (gateway account)."""
    estate = tmp_path / "tiny.yaml"
    estate.write_text(TINY)
    out = tmp_path / "secrets"
    assert credentials(out, "--estate-file", str(estate), "--gateway", "sim-tiny=tiny").returncode == 0
    gateway_pw = sheet(out / "devices.csv")["sim-tiny"]["password"]
    broker = deploy_broker(require_mosquitto(), tmp_path / "broker", devices={}, platform={})
    for name in ("passwd", "platform-passwd", "acl"):
        (broker.directory / name).write_text((out / name).read_text())
    broker.start()
    platform = Client(broker.platform_port, "steward-platform", PLATFORM_PW)
    try:
        platform.subscribe("steward/+/up/#")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEWARD_")}
        cmd = [sys.executable, "-m", "steward", "simulate", str(estate), "--broker",
               f"mqtt://127.0.0.1:{broker.device_port}", "--speed", "0", "--duration", "10m",
               "--username", "sim-tiny", "--password", gateway_pw]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        time.sleep(0.5)
        devices = {topic.split("/")[3] for topic, _ in platform.received}
        assert devices == {"CW-1-1-101", "CW-1-1-102"}
    finally:
        platform.close()
        broker.kill()
