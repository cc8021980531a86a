"""The simulated digital-workshop line: a deterministic core, OPC UA and MQTT outputs, a ledger.

Offline use (no servers): ``run = generate(load_scenario("examples/compact.yaml"), 7, 3600)``,
iterate ``run`` for :class:`zhizao.model.Sample` s, then read ``run.ledger``. Live use:
:class:`simulator.runtime.SimulatorRuntime`. See ``simulator/README.md``.
"""

from simulator.engine import Generated, Simulation, generate
from simulator.scenario import Scenario, load_scenario, scenario_from_dict

__all__ = ["Generated", "Scenario", "Simulation", "generate", "load_scenario", "scenario_from_dict"]
