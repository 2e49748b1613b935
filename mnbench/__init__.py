"""mnbench: build, export and benchmark MobileNets on the host CPU and on Android phones."""

__version__ = "0.1.0"
