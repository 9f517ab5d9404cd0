"""The always-on service (``vhlake serve``): continuous ingest, micro-batch pipeline, metrics, HTTP."""
