"""Bronze → silver → gold: pure SQL steps (expectations, dedupe, fold, metrics) and the incremental runner."""
