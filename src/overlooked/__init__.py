"""overlooked: memory networks, spiking networks and capsule networks, measured against what won."""

__version__ = "0.1.0"
