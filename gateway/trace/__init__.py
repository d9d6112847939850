"""Traceability: each product's production record at a machine (gateway/trace)."""
