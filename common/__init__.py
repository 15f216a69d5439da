"""Shared building blocks for every homework: data location, seeding, devices, training, metrics, plots."""
