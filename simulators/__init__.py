"""Standalone device fleet: meters, equipment sensors and door controllers of an estate file.

Imports only ``protocol`` and ``core`` from the project and talks to the platform over MQTT only.

    Fleet.from_file(path, seed=..., start=..., scenarios=[...])  deterministic frames, no broker
    run_simulation(path, host, port, seed=..., speed=..., ...)   publish them live (QoS 1)
    DoorControls()                                               steer door controllers during a live run
"""

from simulators.controls import DoorControls
from simulators.doors import Whitelist
from simulators.fleet import Fleet
from simulators.frames import Frame
from simulators.meters import RegisterStart
from simulators.run import RunStats, run_simulation
from simulators.scenarios import SCENARIOS, ScenarioPlan, ScenarioSpec, parse_scenario

__all__ = [
    "SCENARIOS",
    "DoorControls",
    "Fleet",
    "Frame",
    "RegisterStart",
    "RunStats",
    "ScenarioPlan",
    "ScenarioSpec",
    "Whitelist",
    "parse_scenario",
    "run_simulation",
]
