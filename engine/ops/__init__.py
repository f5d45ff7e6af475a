"""Image ops with one interface and several implementations: reference (NumPy float64, the truth
for tests) and cpu (OpenCV/NumPy, fast, writes into caller-owned buffers)."""
