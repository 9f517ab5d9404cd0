"""Only the compiled part of vhlake; everything else is in pyproject.toml."""

from setuptools import Extension, setup

# The bronze fast-path scanner, loaded with ctypes by src/vhlake/ingest/fast_parse.py. Optional: without
# a C compiler the install still succeeds and every line takes the exact DuckDB path.
scanner = Extension(
    "vhlake.ingest._scan", ["src/vhlake/ingest/_scan.c"], extra_compile_args=["-O2"], optional=True
)
setup(ext_modules=[scanner])
