"""Query engines over the lake: SQL written once in the Databricks dialect."""
