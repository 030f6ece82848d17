"""Aer noise-model factories (depolarizing, thermal relaxation, device-calibrated, scaled).

Not yet available in this release.
"""
