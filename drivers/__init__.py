"""Device drivers, one subpackage per protocol. See :mod:`drivers.base` for the contract."""
