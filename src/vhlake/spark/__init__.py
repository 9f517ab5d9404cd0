"""The pipeline as PySpark jobs, for when ValidaHub outgrows one machine (issue P11).

pyspark is the optional ``spark`` extra; nothing here imports it at module level.
"""
