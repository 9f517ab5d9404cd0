"""The analytics the API, the dashboard and alerts ask for: ``AnalyticsRepository`` and its answers."""
