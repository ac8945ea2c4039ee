"""The host: checks and setup, the accelerator, its stats, KSM."""
