"""Models: trainable networks. Import a concrete model through the registry."""
