"""SegSEM: SEM contour extraction (SAM2 with encoder-only fine-tuning, a classical
fallback, the hybrid of both), contour metrics and export."""
