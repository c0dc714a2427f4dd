"""Metrics on images: spectral statistics (``spectral``) and, later, pixel, FID/KID and LPIPS metrics.

Sub-modules are imported on demand; importing this package has no side effects.
"""
