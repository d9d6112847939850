"""Test support: launchers for the real servers the tests, the demo checks and the bench
run on loopback (mosquitto, amqtt, influxd, VictoriaMetrics). Not shipped in the wheel:
a gateway box needs none of them."""
