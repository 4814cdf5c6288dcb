"""Training: the Lightning module, the asr-train Hydra app, and checkpoint loading."""
