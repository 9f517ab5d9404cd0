"""Only the compiled part of vhlake; everything else is in pyproject.toml."""

from setuptools import Extension, setup

# The bronze fast-path scanner, loaded with ctypes by src/vhlake/ingest/fast_parse.py.
setup(
    ext_modules=[Extension("vhlake.ingest._scan", ["src/vhlake/ingest/_scan.c"], extra_compile_args=["-O2"])]
)
