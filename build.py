"""cffi build script for ``realmpy._engine`` (out-of-line API mode).

Why it looks the way it does:

* The ``cdef`` is read verbatim from ``csrc/realmpy.h`` (the block between
  ``/* BEGIN CDEF */`` and ``/* END CDEF */``), so the C header stays the
  single source of truth for the C API; nothing is declared twice.
* API mode (``set_source``) compiles a real CPython extension: a call costs
  ~0.06 us instead of ~0.17 us in ABI mode, which matters on the hot paths.
* ``setup.py`` names this file in ``cffi_modules``; setuptools then builds
  the extension for ``pip install``, ``pip wheel`` and ``python -m build``.
* ``python build.py`` compiles the extension in place (for quick hacking),
  and with it ``realmpy._native`` (``csrc/py/*.c``, a plain
  CPython extension on the limited API: the object layer's per-object hot
  paths, which cffi cannot express).  ``setup.py`` builds the same
  :func:`native_extension` for wheels.
* A ``build.py`` at the repository root shadows PyPA's ``build`` package, so
  ``python -m build`` would run *this* file.  When we detect that, we hand
  over to the real PyPA ``build`` with the repository root removed from
  ``sys.path`` (see ``_hand_over_to_pypa_build``).
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def _run_as_dash_m_build() -> bool:
    """True when started as ``python -m build`` (not ``python build.py``)."""
    if __name__ != "__main__":
        return False
    spec = globals().get("__spec__")
    return spec is not None and getattr(spec, "name", None) == "build"


def _hand_over_to_pypa_build() -> None:
    """Run PyPA's ``build`` front end as if this file did not exist."""
    import runpy

    def shadows(entry: str) -> bool:
        return os.path.abspath(entry or os.curdir) == _HERE

    sys.path[:] = [p for p in sys.path if not shadows(p)]
    sys.modules.pop("build", None)
    try:
        runpy.run_module("build", run_name="__main__", alter_sys=True)
    except ImportError as exc:
        sys.exit(
            "python -m build: PyPA's 'build' package is not installed "
            f"({exc}); install it with: python -m pip install build"
        )
    sys.exit(0)


if _run_as_dash_m_build():
    _hand_over_to_pypa_build()


from cffi import FFI  # noqa: E402  (after the hand-over: cffi may be absent)

HEADER = os.path.join(_HERE, "csrc", "realmpy.h")
BEGIN, END = "/* BEGIN CDEF */", "/* END CDEF */"


def read_cdef(path: str = HEADER) -> str:
    """Return the text between the CDEF markers of the public header."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise RuntimeError(f"{path}: missing {BEGIN} ... {END} markers")
    return text[start + len(BEGIN) : stop]


def c_sources(root: str = "") -> list[str]:
    """All engine sources, as paths under ``root`` (default: relative).

    setuptools wants paths relative to the project root (they go into the
    sdist as they are); ``python build.py`` compiles in a scratch directory
    and needs absolute ones.
    """
    found = sorted(glob.glob(os.path.join(_HERE, "csrc", "*.c")))
    return [os.path.join(root, "csrc", os.path.basename(p)) for p in found]


CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread"]


def make_ffibuilder(root: str = "") -> FFI:
    """The cffi builder for ``realmpy._engine``; paths relative to ``root``."""
    builder = FFI()
    builder.cdef(read_cdef())
    builder.set_source(
        "realmpy._engine",
        '#include "realmpy.h"',
        sources=c_sources(root),
        include_dirs=[os.path.join(root, "csrc")],
        extra_compile_args=CFLAGS,
        extra_link_args=["-pthread"],
        libraries=["pthread"],
    )
    return builder


ffibuilder = make_ffibuilder()

# realmpy._native: the limited API of CPython 3.10 (PyObject_GenericGetDict,
# PyType_GetSlot on any type, METH_FASTCALL), so one abi3 wheel serves 3.10+.
NATIVE_LIMITED_API = "0x030A0000"


# Its C files (csrc/py/native.h says which concept each holds); it shares
# the header-only msgpack.h and keytags.h with the engine.
NATIVE_SOURCES = (
    "module.c",
    "objects.c",
    "record.c",
    "modelinit.c",
    "bulk.c",
    "storage.c",
    "add.c",
)


def native_extension(root: str = "") -> Any:
    """The setuptools ``Extension`` of ``realmpy._native``."""
    from setuptools import Extension

    return Extension(
        "realmpy._native",
        sources=[os.path.join(root, "csrc", "py", n) for n in NATIVE_SOURCES],
        include_dirs=[os.path.join(root, "csrc")],
        define_macros=[("Py_LIMITED_API", NATIVE_LIMITED_API)],
        py_limited_api=True,
        extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"],
    )


def _build_native_in_place(scratch: str) -> str:
    """Compile ``realmpy/_native.abi3.so`` in the tree (CFLAGS/LDFLAGS from
    the environment apply, as for the engine)."""
    from setuptools import Distribution

    dist = Distribution({"ext_modules": [native_extension(_HERE)]})
    cmd: Any = dist.get_command_obj("build_ext")
    cmd.build_temp = os.path.join(scratch, "native")
    cmd.build_lib = os.path.join(scratch, "native-lib")
    cmd.ensure_finalized()
    cmd.run()
    (out,) = cmd.get_outputs()
    return str(out)


def _compile_in_place() -> None:
    """``python build.py``: build ``realmpy/_engine*.so`` inside the tree.

    Objects and generated C go to ``build-cffi/`` (git-ignored).
    """
    import shutil

    scratch = os.path.join(_HERE, "build-cffi")
    os.makedirs(scratch, exist_ok=True)
    out = make_ffibuilder(_HERE).compile(tmpdir=scratch, verbose=True)
    # Install it under the name an editable install uses (the module is
    # compiled against the limited API either way), and remove any other
    # build's module: a stale _engine.cpython-*.so would shadow it.
    for old in glob.glob(os.path.join(_HERE, "realmpy", "_engine*.so")):
        os.remove(old)
    dest = os.path.join(_HERE, "realmpy", "_engine.abi3.so")
    shutil.copyfile(out, dest)
    print(f"built {dest}")
    out = _build_native_in_place(scratch)
    for old in glob.glob(os.path.join(_HERE, "realmpy", "_native*.so")):
        os.remove(old)
    dest = os.path.join(_HERE, "realmpy", "_native.abi3.so")
    shutil.copyfile(out, dest)
    print(f"built {dest}")


if __name__ == "__main__":
    _compile_in_place()
