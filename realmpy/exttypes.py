"""The msgpack extension type numbers realmpy uses: one table, two number spaces.

Values are msgpack in two places that never meet, and each numbers its
extension types on its own (fixed when each format was published; changing
a number means a key/record format bump with conversion, or protocol v2):

=========  ================================  ================================
type       record values in a realm file     values in sync messages
           (``realmpy.codec``)               (``realmpy.wire.protocol``)
=========  ================================  ================================
datetime   1: microseconds since the epoch,  msgpack's timestamp (ext -1)
           8 bytes big-endian, sign flipped
Decimal    2: its ``str`` in ASCII           3: its ``str`` in ASCII
ObjectId   3: the 12 bytes                   1: the 12 bytes
UUID       4: the 16 bytes                   2: the 16 bytes
set        5: a packed msgpack array         (not an extension type)
link       6: the target's encoded key       (not an extension type)
mixed      7: the target class's name in     4: a packed msgpack array
link       UTF-8, 0x00, the target's         ``[class name, primary key]``
           encoded key
=========  ================================  ================================

A link held by a ``Mixed`` property (realmpy/mixed.py) names its target's
class, since it may be any class; a link property's target is in the schema.

Keys (the order-preserving encoding of ``realmpy.codec``) are not msgpack and
use type tags instead (``codec.T_*``); docs/format.md lists every encoding.
"""

from __future__ import annotations

from typing import Final

# -- record values in a realm file (realmpy.codec)
RECORD_DATETIME: Final = 1
RECORD_DECIMAL: Final = 2
RECORD_OBJECTID: Final = 3
RECORD_UUID: Final = 4
RECORD_SET: Final = 5
RECORD_LINK: Final = 6
RECORD_MIXED_LINK: Final = 7

# -- values in sync messages (realmpy.wire.protocol); datetimes use msgpack's timestamp
WIRE_OBJECT_ID: Final = 1
WIRE_UUID: Final = 2
WIRE_DECIMAL: Final = 3
WIRE_MIXED_LINK: Final = 4
