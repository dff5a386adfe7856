"""pushgw core: config, store, bus, delivery, workers, CLI."""

__version__ = "0.1.0"
