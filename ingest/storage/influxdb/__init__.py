"""InfluxDB storage backend (v1-compatible HTTP API: /write and /query)."""
