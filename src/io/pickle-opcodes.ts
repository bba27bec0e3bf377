// Pickle opcodes (CPython Lib/pickletools.py), protocols 0-5, by name. Comments give the
// one-character mnemonic of the text-era opcodes.

export const OP = {
  // Framing and protocol
  PROTO: 0x80,
  FRAME: 0x95,
  STOP: 0x2e, // .
  // Constants
  NONE: 0x4e, // N
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  INT: 0x49, // I (decimal text line; "01"/"00" are True/False)
  BININT: 0x4a, // J (int32)
  BININT1: 0x4b, // K (uint8)
  BININT2: 0x4d, // M (uint16)
  LONG: 0x4c, // L (decimal text line)
  LONG1: 0x8a, // two's complement, 1-byte length
  LONG4: 0x8b, // two's complement, 4-byte length
  FLOAT: 0x46, // F (text line)
  BINFLOAT: 0x47, // G (big-endian float64)
  // Strings and bytes
  BINUNICODE: 0x58, // X
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINSTRING: 0x54, // T (Python 2 str)
  SHORT_BINSTRING: 0x55, // U (Python 2 str)
  BINBYTES: 0x42, // B
  SHORT_BINBYTES: 0x43, // C
  BINBYTES8: 0x8e,
  BYTEARRAY8: 0x96,
  // Containers
  MARK: 0x28, // (
  EMPTY_TUPLE: 0x29, // )
  TUPLE: 0x74, // t
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  EMPTY_LIST: 0x5d, // ]
  LIST: 0x6c, // l
  APPEND: 0x61, // a
  APPENDS: 0x65, // e
  EMPTY_DICT: 0x7d, // }
  DICT: 0x64, // d
  SETITEM: 0x73, // s
  SETITEMS: 0x75, // u
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  // Stack
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  // Memo
  PUT: 0x70, // p
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  MEMOIZE: 0x94,
  GET: 0x67, // g
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  // Globals, calls and objects
  GLOBAL: 0x63, // c
  STACK_GLOBAL: 0x93,
  REDUCE: 0x52, // R
  NEWOBJ: 0x81,
  NEWOBJ_EX: 0x92,
  INST: 0x69, // i
  OBJ: 0x6f, // o
  BUILD: 0x62, // b
  PERSID: 0x50, // P
  BINPERSID: 0x51, // Q
} as const;
