"""The data plane: protocols that move bytes between clients and backends."""
