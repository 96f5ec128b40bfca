"""Benchmarks and reports: they read the trainer's outputs and are never called by it."""
