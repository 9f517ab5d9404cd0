"""Only the compiled part of vhlake; everything else is in pyproject.toml."""

import os
from glob import glob

from setuptools import Extension, setup

# The native fast paths (bronze line scanning, payload typing, lookup keys, the job fold), called through
# ctypes by src/vhlake/native/__init__.py. Optional: without a C compiler the install still succeeds and
# everything takes the exact DuckDB paths.
native = Extension(
    "vhlake.native._native",
    sorted(glob("src/vhlake/native/*.c")),
    depends=sorted(glob("src/vhlake/native/*.h")),
    # Every warning is an error: a warning in this code is a memory-safety question until proven not.
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror"],
    libraries=["m"],
    optional=True,
)
# VHLAKE_NATIVE=0 builds a pure-Python wheel (py3-none-any), as the Databricks bundle does: its jobs run on
# whatever Python and platform the serverless environment has, not the deploying machine's.
setup(ext_modules=[] if os.environ.get("VHLAKE_NATIVE") == "0" else [native])
