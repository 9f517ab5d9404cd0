"""Event sources (files, the embedded log) and the exactly-once bronze writer."""
