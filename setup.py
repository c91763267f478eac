"""setuptools shim: exists only because ``cffi_modules`` cannot be declared
in setup.cfg or pyproject.toml (python-cffi/cffi#55; in setup.cfg it is
silently ignored and the wheel comes out without the engine).  All other
metadata lives in setup.cfg."""

from setuptools import setup

setup(cffi_modules=["build.py:ffibuilder"])
