"""Memory-augmented networks (NTM, DNC, DWM, the encoder-solver family) and their shared maths."""
