"""setuptools shim: exists only because ``cffi_modules`` cannot be declared
in setup.cfg or pyproject.toml (python-cffi/cffi#55; in setup.cfg it is
silently ignored and the wheel comes out without the engine), and to add
``realmpy._native``, whose Extension build.py defines (one definition for
wheels and in-place builds).  All other metadata lives in setup.cfg."""

import importlib.util
import os

from setuptools import setup

_HERE = os.path.dirname(os.path.abspath(__file__))


def _native() -> object:
    # Loaded by path under another name: "build" is PyPA's build package.
    spec = importlib.util.spec_from_file_location("_realmpy_build", os.path.join(_HERE, "build.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.native_extension()


setup(cffi_modules=["build.py:ffibuilder"], ext_modules=[_native()])
