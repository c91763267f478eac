/*
 * keytags.h -- the type tags of realmpy's order-preserving key encoding.
 *
 * A key (an index entry's value part, a primary key) starts with one of
 * these bytes, so keys of different types sort by type and keys of one type
 * by value.  The encoding itself is realmpy/codec.py's (its module
 * docstring is the description, KEY_FORMAT its version); the native module
 * encodes ints and strs on the bulk paths (csrc/py/bulk.c) and must write
 * the same bytes.  codec.py's T_* constants mirror these names
 * (RP_KEY_T_NONE is codec.T_NONE, ...): tests/test_codec.py parses this
 * header and checks that they agree, so change both or neither.
 *
 * Changing a value changes every stored key: bump codec.KEY_FORMAT and
 * convert (docs/format.md).
 */
#ifndef REALMPY_KEYTAGS_H
#define REALMPY_KEYTAGS_H

#define RP_KEY_T_NONE     0x01
#define RP_KEY_T_BOOL     0x10
/* The int 0; an int of n significant bytes (1..8) has tag T_INT_ZERO + n
 * (positive) or T_INT_ZERO - n (negative), so tags T_INT_MIN..T_INT_MAX. */
#define RP_KEY_T_INT_ZERO 0x1C
#define RP_KEY_T_INT_MIN  (RP_KEY_T_INT_ZERO - 8)
#define RP_KEY_T_INT_MAX  (RP_KEY_T_INT_ZERO + 8)
#define RP_KEY_T_FLOAT    0x28
#define RP_KEY_T_DECIMAL  0x29
/* str and bytes: the bytes with 0x00 escaped as 0x00 0xFF, then
 * RP_KEY_END (str as UTF-8; the native module only encodes strs without
 * NUL, which need no escape). */
#define RP_KEY_T_STR      0x30
#define RP_KEY_T_BYTES    0x40
#define RP_KEY_T_DATETIME 0x50
#define RP_KEY_T_OBJECTID 0x60
#define RP_KEY_T_UUID     0x70
/* Index keys of mixed values only (the native module never writes them):
 * a link (class name and encoded key, each escaped like a str body), and
 * the kind of a nested list / dictionary alone. */
#define RP_KEY_T_MIXED_LINK 0x80
#define RP_KEY_T_MIXED_LIST 0x90
#define RP_KEY_T_MIXED_DICT 0x91

#define RP_KEY_END        0x00   /* ends a str or bytes body */

#endif
