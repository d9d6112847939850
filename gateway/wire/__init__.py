"""The edge-to-backend wire formats, with no I/O: JSON v1 payloads and topics
(``encode``), compact binary records and packs (``compact``). The gateway encodes them,
the ingest and the test subscriber decode them; see docs/wire-format.md."""
