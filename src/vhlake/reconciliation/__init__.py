"""Reconciliation: every event counted from its source to gold (``vhlake reconcile``)."""
