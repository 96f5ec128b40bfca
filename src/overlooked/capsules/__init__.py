"""Capsule networks: dynamic routing (Sabour et al. 2017) and EM routing (Hinton et al. 2018)."""
