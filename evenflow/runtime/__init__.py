"""The control plane: owns config, backends and health, and publishes snapshots."""
