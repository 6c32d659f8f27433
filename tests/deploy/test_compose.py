"""The compose smoke test: the project's own Dockerfile and docker-compose.yml, run as an operator would.

Build the image, prepare the broker's accounts with `steward devices credentials`, `docker-compose up -d`,
wait until every service is healthy, import an estate and make a staff token inside the image, publish a
simulated fleet through the compose broker (the estate's gateway account from the credential sheet), see
its readings and the ticket its overheating transformer opens through the API, check that a device can
neither publish as another nor log in with another's password, then `down -v`.

Where no registry is reachable, ../shared/tools/docker-standins builds local stand-ins under the pinned
image names (and starts dockerd). Skipped only when no Docker engine can be started; STEWARD_REQUIRE_DOCKER=1
makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core import clock
from steward.broker import free_port
from tests.support.deploy_broker import make_certs

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT.parent / "shared" / "tools" / "docker-standins" / "build"
IMAGES = {
    "python": "python:3.11-slim",
    "postgres": "timescale/timescaledb:2.17.2-pg16",
    "mosquitto": "eclipse-mosquitto:2.0.20",
}
SERVICES = ("db", "broker", "ingest", "worker", "api")
ESTATE = """\
estate: {code: smoke, name: Smoke, timezone: Asia/Shanghai}
buildings:
  - {code: "1", name: B1, floors: 1, entrances: 1, units_per_floor: 2}
unit_meters:
  - {kind: cold_water_meter, code: "CW-{unit}", register_max: "99999.999", resolution: "0.001",
     expected_interval_s: 300}
rooms:
  - code: PR1
    name: 1号配电房
    kind: power_room
    devices:
      - code: TR1
        kind: dry_type_transformer
        name: 1#干式变压器
        expected_interval_s: 30
        attrs: {rating_kva: 1000, insulation_class: F, fan_on_c: 110, warn_c: 130, alarm_c: 155, trip_c: 170}
        points:
          - {metric: winding_temp_a_c, unit: °C, label: A相绕组温度, nominal: 78, noise: 0.4}
          - {metric: winding_temp_b_c, unit: °C, label: B相绕组温度, nominal: 81, noise: 0.4}
          - {metric: winding_temp_c_c, unit: °C, label: C相绕组温度, nominal: 77, noise: 0.4}
      - code: TR2
        kind: dry_type_transformer
        name: 2#干式变压器
        expected_interval_s: 30
        attrs: {rating_kva: 1000, insulation_class: F, fan_on_c: 110, warn_c: 130, alarm_c: 155, trip_c: 170}
        points:
          - {metric: winding_temp_a_c, unit: °C, label: A相绕组温度, nominal: 72, noise: 0.4}
"""

pytestmark = pytest.mark.docker


def _engine_answers() -> bool:
    return (
        bool(shutil.which("docker"))
        and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0
    )


def _docker_engine() -> str | None:
    """Why no engine could be started, or None when one answers (building the stand-ins if needed)."""
    missing = [f"{kind}={name}" for kind, name in IMAGES.items()]
    if _engine_answers():
        missing = [
            spec
            for spec in missing
            if subprocess.run(
                ["docker", "image", "inspect", spec.split("=", 1)[1]], capture_output=True, check=False
            ).returncode
        ]
        if not missing:
            return None
    if not STANDINS.exists():
        return f"no Docker engine (or images) and no stand-in builder at {STANDINS}"
    built = subprocess.run([str(STANDINS), *missing], capture_output=True, text=True, timeout=1200, check=False)
    if built.returncode != 0:
        return f"{STANDINS} failed: {built.stdout[-1500:]}{built.stderr[-1500:]}"
    return None


def _stop_dockerd() -> None:
    """Stop the daemon the stand-in builder started for this test (by its pid; never one that was running)."""
    pid_file = Path(os.environ.get("STANDINS_HOME", "/tmp/docker-standins")) / "dockerd.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    pid_file.unlink(missing_ok=True)


def _compose_bin() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


class Stack:
    def __init__(self, env: dict[str, str], project: str) -> None:
        self.env, self.project = env, project

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*_compose_bin(), "-p", self.project, "-f", str(ROOT / "docker-compose.yml"), *args]
        out = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check:
            assert out.returncode == 0, f"{' '.join(args)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out

    def health(self) -> dict[str, str]:
        states = {}
        for service in SERVICES:
            cid = self.compose("ps", "-q", service).stdout.strip()
            if not cid:
                states[service] = "absent"
                continue
            fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
            states[service] = subprocess.run(
                ["docker", "inspect", "-f", fmt, cid], capture_output=True, text=True, check=False
            ).stdout.strip()
        return states

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", check=False).stdout[-8000:]


def wait(what: str, cond: Callable[[], Any], timeout: float, stack: Stack) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; health {stack.health()}\n{stack.logs()}")
        time.sleep(2)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, Path]]:
    engine_was_up = _engine_answers()
    why = _docker_engine()
    if why is not None:
        if os.environ.get("STEWARD_REQUIRE_DOCKER") == "1":
            pytest.fail(f"STEWARD_REQUIRE_DOCKER=1 but {why}")
        pytest.skip(why)
    # Readable by the containers' own users (steward 10001, mosquitto): pytest's tmp_path is 0700.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    (shared / "smoke.yaml").write_text(ESTATE)
    (shared / "smoke.yaml").chmod(0o644)
    certs = make_certs(shared / "certs")
    for f in (shared / "certs").iterdir():
        f.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "COMPOSE_", "DOCKER_HOST"))}
    env |= {
        "STEWARD_DB_PASSWORD": "smoke-db-password-0123456789",
        "STEWARD_MQTT_PASSWORD": "smoke-platform-password-0123456789",
        "STEWARD_SECRET_KEY": "smoke-secret-key-0123456789abcdef",
        "STEWARD_BROKER_SECRETS": str(shared / "secrets"),
        "STEWARD_BROKER_CERTS": str(certs.ca.parent),
        # The host's own Mosquitto holds 1883: the compose broker's device ports go elsewhere.
        "STEWARD_MQTT_HOST_PORT": str(free_port()),
        "STEWARD_MQTTS_HOST_PORT": str(free_port()),
        "STEWARD_API_HOST_PORT": str(free_port()),
        "STEWARD_IMAGE": "steward:smoke-test",
    }
    # The operator's first step: the broker's accounts and the credential sheet, from the estate file.
    creds = subprocess.run(
        [sys.executable, "-m", "steward", "devices", "credentials", "--output", str(shared / "secrets"),
         "--estate-file", str(shared / "smoke.yaml"), "--gateway", "sim-smoke=smoke"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert creds.returncode == 0, creds.stdout + creds.stderr
    stack = Stack(env, f"stewardsmoke{os.getpid()}")
    try:
        yield stack, shared
    finally:
        stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
        if not engine_was_up:
            _stop_dockerd()


def api_get(port: int, path: str, token: str) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def device_client(port: int, user: str, password: str) -> tuple[mqtt.Client, list[Any]]:
    result: list[Any] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.on_connect = lambda c, u, f, reason, p: result.append(reason)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 10
    while not result and time.monotonic() < deadline:
        time.sleep(0.05)
    return c, result


def test_compose_stack_starts_ingests_and_serves(stack: tuple[Stack, Path]) -> None:
    s, shared = stack
    started = time.monotonic()
    s.compose("build", timeout=900)
    s.compose("up", "-d", timeout=600)
    wait("every service healthy", lambda: set(s.health().values()) == {"healthy"}, 300, s)
    assert s.compose("ps", "-q", "migrate").stdout.strip()  # ran, and exited 0 (the others waited for it)
    api_port, mqtt_port = int(s.env["STEWARD_API_HOST_PORT"]), int(s.env["STEWARD_MQTT_HOST_PORT"])
    assert healthy(api_port)

    mount = ["-v", f"{shared}:/smoke:ro"]
    s.compose("run", "--rm", *mount, "api", "estate", "import", "/smoke/smoke.yaml")
    s.compose("run", "--rm", "api", "user", "add", "smoke", "--role", "admin", "--all-estates",
              "--password", "smoke-admin-password")  # fmt: skip
    token = (
        s.compose("run", "--rm", "api", "token", "create", "smoke", "--name", "smoke").stdout.strip().splitlines()[-1]
    )

    sheet = {
        line.split(",")[2]: line.split(",") for line in (shared / "secrets" / "devices.csv").read_text().splitlines()
    }
    # The fleet: 20 simulated minutes replayed as fast as the broker takes them, through the gateway account.
    sim = subprocess.run(
        [sys.executable, "-m", "steward", "simulate", str(shared / "smoke.yaml"), "--broker",
         f"mqtt://127.0.0.1:{mqtt_port}", "--speed", "0", "--duration", "20m", "--seed", "3",
         "--scenario", "transformer_overheat_fast:TR1@5m",
         "--credentials", str(shared / "secrets" / "devices.csv")],
        env=s.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stdout[-2000:] + sim.stderr[-2000:]

    devices = {d["code"]: d for d in api_get(api_port, "/api/estates/smoke/devices", token)["items"]}
    tr1 = api_get(api_port, f"/api/devices/{devices['TR1']['id']}", token)
    point = next(p for p in tr1["points"] if p["metric"] == "winding_temp_a_c")

    def samples() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = api_get(api_port, f"/api/points/{point['id']}/samples", token)["items"]
        return got

    wait("TR1's readings in the API", lambda: len(samples()) >= 30, 120, s)
    assert max(x["value"] for x in samples()) > 155  # the overheating reached the alarm level

    def tickets() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = api_get(api_port, "/api/tickets?estate=smoke", token)["items"]
        return got

    opened = wait("a ticket from the overheating transformer", tickets, 120, s)
    assert {t["source"] for t in opened} == {"alarm"}

    # A device with its own account: it cannot log in with another's password, nor publish as another.
    _, refused = device_client(mqtt_port, "CW-1-1-101", sheet["TR2"][3])
    assert refused
    assert refused[0].is_failure
    tr2 = api_get(api_port, f"/api/devices/{devices['TR2']['id']}", token)["points"][0]
    client, ok = device_client(mqtt_port, "TR1", sheet["TR1"][3])
    assert ok
    assert not ok[0].is_failure
    now = clock.now().replace(microsecond=0)  # the device's clock, stamped on its own message

    def telemetry(value: float, seq: int) -> bytes:
        return json.dumps({"v": 1, "ts": now.isoformat(), "seq": seq, "values": {"winding_temp_a_c": value}}).encode()

    client.publish("steward/smoke/up/TR2/telemetry", telemetry(-42.0, 9001), qos=1).wait_for_publish(5)
    client.publish("steward/smoke/up/TR1/telemetry", telemetry(42.0, 9002), qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    # TR1's own message lands (published after the forged one, on the same connection): the forged one had
    # its chance and is nowhere, not even in dead letters.
    wait("TR1's own message", lambda: any(x["value"] == 42.0 for x in samples()), 60, s)
    forged = api_get(api_port, f"/api/points/{tr2['id']}/samples", token)["items"]
    assert all(x["value"] != -42.0 for x in forged)
    dead = json.dumps(api_get(api_port, "/api/ingest/dead-letters", token))
    assert "-42.0" not in dead
    print(f"compose smoke: {time.monotonic() - started:.0f} s from build to checks")
