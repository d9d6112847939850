"""edgegw firmware simulator: realistic, flawed factory devices for tests and demos.

Serves devices described by the same profiles the gateway uses, over Modbus TCP on
loopback ports and Modbus RTU on serial lines or ptys, with machine states that change
over time and fault injection (drop, silence, slow, exception, garbage, short replies).
"""

__version__ = "0.1.0"
