"""The 5G module as a device: its link quality and identity as telemetry."""
