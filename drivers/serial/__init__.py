"""Serial line driver: framed ASCII or binary devices on RS-232/485 (pyserial)."""
