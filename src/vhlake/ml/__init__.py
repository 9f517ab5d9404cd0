"""Machine learning over the lake: anomaly detection (and, to come, forecasts) into prediction tables."""
