"""Backend ingest: MQTT (edgegw payloads) -> InfluxDB, exactly once in the database."""
