# Type stub for the cffi-compiled engine module (built by build.py).
# cffi objects are dynamically typed; the typed API is realmpy.storage.
from typing import Any

ffi: Any
lib: Any
