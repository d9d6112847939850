"""Re-export of the project's server launchers for tests."""

from firmware_sim.servers import Mosquitto, free_port, mosquitto, wait_port

__all__ = ["Mosquitto", "free_port", "mosquitto", "wait_port"]
