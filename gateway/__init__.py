"""edgegw: edge IoT gateway agent for factory equipment."""

__version__ = "0.1.0"
