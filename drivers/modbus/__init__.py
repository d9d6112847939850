"""Modbus TCP and RTU driver built on pymodbus (see README.md in this folder)."""
