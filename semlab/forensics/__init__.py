"""Real vs generated: detectors, Captum saliency and FFT-spectrum artifact analysis."""
