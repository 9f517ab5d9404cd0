"""The HTTP API: events in, analytics out, behind API keys."""
