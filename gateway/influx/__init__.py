"""InfluxDB, shared by the backend ingest and the gateway's direct route: where line
protocol goes (``sinkconfig``, ``sinks``), how batches become line protocol
(``lineproto``), how a write is retried, split and bisected (``writer``), and where what
the database refuses is kept (``deadletter``). Imports neither the agent runtime nor the
ingest."""
