"""Health: active probes, rise/fall flips, passive outlier ejection. Control plane only."""
