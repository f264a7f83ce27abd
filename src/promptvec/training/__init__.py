"""Training: the Accelerate loop, its configuration and its files."""
