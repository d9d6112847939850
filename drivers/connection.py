"""``devices[].connection``: the union of every protocol's connection model, chosen by its
``kind`` (the models live in ``drivers/<protocol>/config.py``; the kind -> driver table
is drivers/registry.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from drivers.modbus.config import ModbusRtu, ModbusTcp
from drivers.modem.config import ModemAt, ModemMm
from drivers.opcua.config import Opcua
from drivers.serial.config import Serial

Connection = Annotated[ModbusTcp | ModbusRtu | Opcua | Serial | ModemAt | ModemMm,
                       Field(discriminator="kind")]
