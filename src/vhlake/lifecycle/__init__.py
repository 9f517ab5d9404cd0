"""Keeping the lake within its retention, compact, vacuumed, explainable and erasable (issue P10)."""
