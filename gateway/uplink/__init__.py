"""Uplinks take entries from the store, deliver them, and acknowledge them to the store."""
