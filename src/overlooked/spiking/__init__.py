"""Spiking neural networks: LIF-family neurons, surrogate gradients, conversion, energy, NIR."""
