"""Metrics: pixel metrics, learned metrics (LPIPS, FID, KID) and their backbone weights."""
