// Value <-> bytes for remote tiers (Redis, Memcached): type-faithful MessagePack (msgpackr with its structured
// extensions), optional compression, and a small header with a format version and a CRC-32, so that bytes this
// codec did not write, or bytes damaged on the way, are refused (E_DESERIALIZE) instead of decoded into garbage.
//
// Wire format, version 1 (byte offsets):
//
//   0      0xC1  magic. The one byte MessagePack never uses, and never the first byte of UTF-8 text, so neither a raw
//                msgpack payload nor JSON / plain text written by something else can pass for ours.
//   1      0x01  format version. A later codec that changes the layout or the body's encoding bumps it; this one
//                refuses any other version rather than misread it.
//   2..5   CRC-32 (IEEE 802.3, the one of zlib and gzip), big-endian, of bytes 6..end (flags and body).
//   6      flags: bits 0-3 the body's compression (0 none, 1 gzip, 2 brotli, 3 zstd); bits 4-7 reserved, zero.
//   7..    body: the MessagePack encoding of the value, compressed as the flags say.
//
// The CRC catches every single-bit flip, every burst of up to 32 bits, truncation and appended bytes, and any other
// damage except with probability 2^-32; it is checked before anything is decompressed or decoded.

import { Buffer } from 'node:buffer'
import * as zlib from 'node:zlib'
import { Packr, RESERVE_START_SPACE } from 'msgpackr'
import { CacheError, describe } from './errors.js'

/** Turns cache values into bytes and back, for stores that keep bytes. */
export interface Codec {
  /** What the codec is, for logs and errors: `msgpack`, `msgpack+gzip`, … */
  readonly name: string
  /**
   * The value's bytes. Throws `CacheError` `E_SERIALIZE` (naming the offending part, with the original error as
   * `cause` when there is one) for a value it cannot give back exactly. The result may be a view into a larger
   * buffer the codec allocated: write it out or copy it, but do not keep many of them alive for long.
   */
  encode(value: unknown): Uint8Array
  /**
   * The value back from `encode`'s bytes. Throws `CacheError` `E_DESERIALIZE` (with `cause` where there is one) for
   * anything else: empty, truncated, corrupted or foreign bytes, or a format version it does not know. The result
   * shares no memory with `bytes`.
   */
  decode(bytes: Uint8Array): unknown
}

export type CodecCompression = 'gzip' | 'brotli' | 'zstd'

export interface CodecOptions {
  /**
   * Compress bodies larger than `compressAbove` bytes. `'zstd'` needs a Node.js whose `node:zlib` has it (22.15+ /
   * 23.8+); asking for it elsewhere is `E_INVALID_OPTION`. Default `false`. Whatever is chosen here, `decode` reads
   * every algorithm (that the running Node.js has), so the setting can change while old entries are still stored.
   */
  compression?: CodecCompression | false
  /** Only bodies larger than this many bytes are compressed. Default 1024. */
  compressAbove?: number
  /** Compression level: gzip 1-9 (default 6), brotli 0-11 (default 4), zstd 1-22 (default 3). */
  level?: number
}

const MAGIC = 0xc1
const VERSION = 1
const HEADER_SIZE = 7
const CRC_OFFSET = 2
const FLAGS_OFFSET = 6
const COMPRESSION_MASK = 0x0f
const NONE = 0
const GZIP = 1
const BROTLI = 2
const ZSTD = 3

// node:zlib's zstd (Node 22.15+ / 23.8+) is not in the @types/node this package builds against: reach it loosely.
interface ZstdZlib {
  zstdCompressSync?: (data: Uint8Array, options?: { params?: Record<number, number> }) => Buffer
  zstdDecompressSync?: (data: Uint8Array) => Buffer
  constants: { ZSTD_c_compressionLevel?: number }
}
const zstd = zlib as unknown as ZstdZlib

/** Whether this Node.js has zstd in node:zlib. */
export function hasZstd(): boolean {
  return typeof zstd.zstdCompressSync === 'function' && typeof zstd.zstdDecompressSync === 'function'
}

// ---------------------------------------------------------------------------------------------------------------
// CRC-32

let crcTable: Int32Array | undefined

/** CRC-32 in JavaScript, for a Node.js without `zlib.crc32` (before 20.15 / 22.2); same results. @internal */
export function crc32Fallback(data: Uint8Array, previous = 0): number {
  if (crcTable === undefined) {
    crcTable = new Int32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      crcTable[n] = c
    }
  }
  const table = crcTable
  let crc = ~previous
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8)
  return ~crc >>> 0
}

// Native where Node has it (a namespace import, so an older Node only sees `undefined` here, not a link error).
const crc32: (data: Uint8Array) => number =
  typeof zlib.crc32 === 'function' ? (data) => zlib.crc32(data) : (data) => crc32Fallback(data)

// ---------------------------------------------------------------------------------------------------------------
// What can be stored: checked before packing, because msgpackr alone would quietly turn a class instance into a plain
// object, a function into undefined, an Error into a different Error and a typed-array subclass into bytes it cannot
// read back.

/** A value the codec refuses; `path` locates it inside the value (`.items[3].owner`). */
class Unrepresentable extends Error {
  path = ''
}

function prependPath(err: unknown, segment: string): unknown {
  if (err instanceof Unrepresentable) err.path = segment + err.path
  return err
}

function keySegment(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`
}

// Types msgpackr (with structured cloning) gives back as themselves, whose contents it stores whole.
const LEAF_PROTOTYPES = new Set<object>([
  Date.prototype,
  RegExp.prototype,
  ArrayBuffer.prototype,
  DataView.prototype,
  Buffer.prototype,
  Int8Array.prototype,
  Uint8Array.prototype,
  Uint8ClampedArray.prototype,
  Int16Array.prototype,
  Uint16Array.prototype,
  Int32Array.prototype,
  Uint32Array.prototype,
  Float32Array.prototype,
  Float64Array.prototype,
  BigInt64Array.prototype,
  BigUint64Array.prototype,
])
// What a subclass instance would come back as, to say so when refusing it.
const BUILT_IN_PROTOTYPES = new Set<object>([Array.prototype, Map.prototype, Set.prototype, ...LEAF_PROTOTYPES])

// String.prototype.isWellFormed (ES2024, in every Node.js >= 20) is not in this package's ES2023 lib types.
interface WellFormed {
  isWellFormed(): boolean
}

function checkString(s: string): void {
  if (!(s as unknown as WellFormed).isWellFormed()) {
    throw new Unrepresentable('a string with a lone UTF-16 surrogate: it is not Unicode and has no UTF-8 form')
  }
}

function whatIs(value: object, proto: object | null): string {
  const name = (proto as { constructor?: { name?: unknown } } | null)?.constructor?.name
  const className = typeof name === 'string' && name !== '' ? name : 'an anonymous class'
  if (value instanceof Error) {
    return `an Error (${className}: ${describe(value.message)}): its class, stack and own properties cannot be stored; cache a plain object such as { name, message } instead`
  }
  for (
    let p = proto === null ? null : (Object.getPrototypeOf(proto) as object | null);
    p;
    p = Object.getPrototypeOf(p)
  ) {
    if (BUILT_IN_PROTOTYPES.has(p)) {
      const base = (p as { constructor: { name: string } }).constructor.name
      return `an instance of ${className}, a subclass of ${base}: it would come back as a plain ${base}`
    }
  }
  return `an instance of ${className}: only plain objects, arrays, Map, Set, Date, RegExp, ArrayBuffer, DataView, typed arrays and Buffer keep their type; convert it to one of those first`
}

/**
 * The walk's state. Most values are small trees: they are walked without remembering what was seen, on a budget of
 * containers. A value that spends it (a cycle, a DAG of shared objects that would be walked once per path, or just
 * a big value) is walked again from the start with a set of the containers seen, which visits each once.
 */
interface Walk {
  budget: number
  seen: Set<object> | undefined
}
const WALK_BUDGET = 1024
// msgpackr packs and unpacks recursively and overflows the stack somewhere past 1 000 levels (less on a deep stack):
// refuse deeper values when encoding, so that every value written can be read back.
const MAX_DEPTH = 500
const RESTART = new Error('walk again, remembering what was seen')

/** Whether to look inside this container (false: already checked). */
function enter(container: object, walk: Walk): boolean {
  const seen = walk.seen
  if (seen === undefined) {
    if (--walk.budget < 0) throw RESTART
    return true
  }
  const size = seen.size
  seen.add(container)
  return seen.size !== size
}

function checkValue(value: unknown): void {
  try {
    check(value, { budget: WALK_BUDGET, seen: undefined }, 0)
  } catch (err) {
    if (err !== RESTART) throw err
    check(value, { budget: 0, seen: new Set() }, 0)
  }
}

function check(value: unknown, walk: Walk, depth: number): void {
  switch (typeof value) {
    case 'string':
      checkString(value)
      return
    case 'object':
      if (value === null) return
      break
    case 'function':
      throw new Unrepresentable(`a function${value.name ? ` (${value.name})` : ''}: functions cannot be stored`)
    case 'symbol':
      throw new Unrepresentable(`a symbol (${String(value)}): symbols cannot be stored`)
    default:
      return // number, boolean, bigint (any size), undefined
  }
  if (depth >= MAX_DEPTH) {
    if (walk.seen === undefined) throw RESTART // or a cycle: the second walk tells
    throw new Unrepresentable(`containers nested more than ${MAX_DEPTH} deep (msgpackr would run out of stack)`)
  }
  const proto = Object.getPrototypeOf(value) as object | null
  if (proto === Object.prototype || proto === null) {
    if (!enter(value, walk)) return
    const record = value as Record<string, unknown>
    let key = ''
    try {
      for (key in record) {
        if (key === '__proto__') {
          throw new Unrepresentable(`an own property named "__proto__", which msgpackr renames when it decodes`)
        }
        checkString(key)
        check(record[key], walk, depth + 1)
      }
    } catch (err) {
      throw prependPath(err, keySegment(key))
    }
  } else if (proto === Array.prototype) {
    if (!enter(value, walk)) return
    const array = value as unknown[]
    let i = 0
    try {
      for (; i < array.length; i++) check(array[i], walk, depth + 1)
    } catch (err) {
      throw prependPath(err, `[${i}]`)
    }
  } else if (proto === Map.prototype) {
    if (!enter(value, walk)) return
    let i = 0
    let part = 'key'
    try {
      for (const [k, v] of value as Map<unknown, unknown>) {
        part = 'key'
        check(k, walk, depth + 1)
        part = 'value'
        check(v, walk, depth + 1)
        i++
      }
    } catch (err) {
      throw prependPath(err, `<Map entry ${i} ${part}>`)
    }
  } else if (proto === Set.prototype) {
    if (!enter(value, walk)) return
    let i = 0
    try {
      for (const item of value as Set<unknown>) {
        check(item, walk, depth + 1)
        i++
      }
    } catch (err) {
      throw prependPath(err, `<Set item ${i}>`)
    }
  } else if (!LEAF_PROTOTYPES.has(proto)) {
    throw new Unrepresentable(whatIs(value, proto))
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Options

interface Compressor {
  readonly id: number
  readonly name: CodecCompression
  compress(body: Uint8Array): Buffer
}

const LEVELS: Record<CodecCompression, { min: number; max: number; default: number }> = {
  gzip: { min: 1, max: 9, default: 6 },
  brotli: { min: 0, max: 11, default: 4 },
  zstd: { min: 1, max: 22, default: 3 },
}

function invalid(message: string): CacheError {
  return new CacheError('E_INVALID_OPTION', `createCodec: ${message}`)
}

function compressorFor(options: CodecOptions): Compressor | undefined {
  const { compression = false, level } = options
  if (compression === false) {
    if (level !== undefined) throw invalid(`level needs a compression ('gzip', 'brotli' or 'zstd')`)
    return undefined
  }
  if (compression !== 'gzip' && compression !== 'brotli' && compression !== 'zstd') {
    throw invalid(`compression must be 'gzip', 'brotli', 'zstd' or false (got ${describe(compression)})`)
  }
  const range = LEVELS[compression]
  if (level !== undefined && (!Number.isInteger(level) || level < range.min || level > range.max)) {
    throw invalid(`level for ${compression} must be an integer ${range.min}-${range.max} (got ${describe(level)})`)
  }
  const chosen = level ?? range.default
  switch (compression) {
    case 'gzip':
      return { id: GZIP, name: compression, compress: (body) => zlib.gzipSync(body, { level: chosen }) }
    case 'brotli':
      return {
        id: BROTLI,
        name: compression,
        compress: (body) =>
          zlib.brotliCompressSync(body, {
            params: {
              [zlib.constants.BROTLI_PARAM_QUALITY]: chosen,
              [zlib.constants.BROTLI_PARAM_SIZE_HINT]: body.length,
            },
          }),
      }
    case 'zstd': {
      const compressSync = zstd.zstdCompressSync
      const levelParam = zstd.constants.ZSTD_c_compressionLevel
      if (!hasZstd() || compressSync === undefined || levelParam === undefined) {
        throw invalid(
          `zstd compression needs a Node.js whose node:zlib has it (22.15+ or 23.8+); this is Node.js ${process.version}: use 'gzip' or 'brotli'`,
        )
      }
      return {
        id: ZSTD,
        name: compression,
        compress: (body) => compressSync(body, { params: { [levelParam]: chosen } }),
      }
    }
  }
}

function decompress(id: number, body: Uint8Array): Uint8Array {
  switch (id) {
    case GZIP:
      return zlib.gunzipSync(body)
    case BROTLI:
      return zlib.brotliDecompressSync(body)
    case ZSTD: {
      const decompressSync = zstd.zstdDecompressSync
      if (decompressSync === undefined) {
        throw new CacheError(
          'E_DESERIALIZE',
          `codec: the value was compressed with zstd, which this Node.js (${process.version}) lacks`,
        )
      }
      return decompressSync(body)
    }
    default:
      throw new CacheError('E_DESERIALIZE', `codec: unknown compression ${id} in the header`)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The codec

/**
 * A codec for remote tiers. Every value it accepts comes back exactly (deep-equal, same types, shared references and
 * cycles preserved) with three documented exceptions: `-0` comes back as `0`, holes in sparse arrays as `undefined`
 * and null-prototype objects as plain objects. Anything it cannot give back exactly is refused with `E_SERIALIZE`.
 */
export function createCodec(options: CodecOptions = {}): Codec {
  if (typeof options !== 'object' || options === null) {
    throw invalid(`options must be an object (got ${describe(options)})`)
  }
  const compressor = compressorFor(options)
  const { compressAbove = 1024 } = options
  if (!Number.isSafeInteger(compressAbove) || compressAbove < 0) {
    throw invalid(`compressAbove must be an integer >= 0, in bytes (got ${describe(compressAbove)})`)
  }
  const packr = new Packr({
    structuredClone: true, // cycles, shared references, Set, RegExp, typed arrays, BigInts beyond 64 bits
    useToJSON: false, // store the value, not what its toJSON() says
    copyBuffers: true, // decoded binary data never aliases the bytes it was read from
    // Unreachable after check(), which refuses functions first; here so a function can never become `undefined`.
    writeFunction: () => {
      throw new Unrepresentable('a function: functions cannot be stored')
    },
  })

  function encode(value: unknown): Uint8Array {
    let packed: Buffer
    try {
      checkValue(value)
      // msgpackr leaves HEADER_SIZE bytes free in front of the body: the header goes there, without a copy.
      packed = packr.pack(value, RESERVE_START_SPACE | HEADER_SIZE)
    } catch (err) {
      if (err instanceof Unrepresentable) {
        const path = err.path.length > 200 ? `${err.path.slice(0, 100)}…${err.path.slice(-80)}` : err.path
        throw new CacheError('E_SERIALIZE', `codec: cannot encode value${path}: ${err.message}`)
      }
      if (err instanceof RangeError && /call stack/i.test(err.message)) {
        throw new CacheError('E_SERIALIZE', 'codec: cannot encode the value: it is nested too deeply', { cause: err })
      }
      throw new CacheError('E_SERIALIZE', `codec: cannot encode the value: ${(err as Error)?.message ?? err}`, {
        cause: err,
      })
    }
    let out: Uint8Array = packed
    let flags = NONE
    const bodySize = packed.length - HEADER_SIZE
    if (compressor !== undefined && bodySize > compressAbove) {
      let compressed: Buffer
      try {
        compressed = compressor.compress(packed.subarray(HEADER_SIZE))
      } catch (err) {
        throw new CacheError('E_SERIALIZE', `codec: ${compressor.name} compression failed`, { cause: err })
      }
      // Incompressible data (already compressed media, random bytes) is stored as it is rather than grown.
      if (compressed.length < bodySize) {
        out = Buffer.allocUnsafe(HEADER_SIZE + compressed.length)
        out.set(compressed, HEADER_SIZE)
        flags = compressor.id
      }
    }
    out[0] = MAGIC
    out[1] = VERSION
    out[FLAGS_OFFSET] = flags
    const crc = crc32(out.subarray(FLAGS_OFFSET))
    out[CRC_OFFSET] = crc >>> 24
    out[CRC_OFFSET + 1] = crc >>> 16
    out[CRC_OFFSET + 2] = crc >>> 8
    out[CRC_OFFSET + 3] = crc
    return out
  }

  function decode(bytes: Uint8Array): unknown {
    if (!(bytes instanceof Uint8Array)) {
      throw new CacheError('E_DESERIALIZE', `codec: expected bytes (a Uint8Array or Buffer), got ${describe(bytes)}`)
    }
    if (bytes.length < HEADER_SIZE) {
      throw new CacheError(
        'E_DESERIALIZE',
        `codec: ${bytes.length} bytes is too short for an encoded value (the header alone is ${HEADER_SIZE})`,
      )
    }
    if (bytes[0] !== MAGIC) {
      throw new CacheError(
        'E_DESERIALIZE',
        `codec: not written by the @cache/core codec (first byte 0x${hex(bytes[0]!)}, expected 0x${hex(MAGIC)})`,
      )
    }
    if (bytes[1] !== VERSION) {
      throw new CacheError(
        'E_DESERIALIZE',
        bytes[1]! > VERSION
          ? `codec: format version ${bytes[1]} is newer than this @cache/core reads (${VERSION}); it was written by a later release`
          : `codec: unknown format version ${bytes[1]}`,
      )
    }
    const stored =
      ((bytes[CRC_OFFSET]! << 24) |
        (bytes[CRC_OFFSET + 1]! << 16) |
        (bytes[CRC_OFFSET + 2]! << 8) |
        bytes[CRC_OFFSET + 3]!) >>>
      0
    if (crc32(bytes.subarray(FLAGS_OFFSET)) !== stored) {
      throw new CacheError('E_DESERIALIZE', 'codec: checksum mismatch, the bytes are corrupted or truncated')
    }
    const flags = bytes[FLAGS_OFFSET]!
    if ((flags & ~COMPRESSION_MASK) !== 0) {
      throw new CacheError('E_DESERIALIZE', `codec: unknown flags 0x${hex(flags)} in the header`)
    }
    // msgpackr gives binary data back as the input's class: read a Buffer (a view, no copy) so Buffers stay Buffers.
    let body: Uint8Array = Buffer.from(bytes.buffer, bytes.byteOffset + HEADER_SIZE, bytes.length - HEADER_SIZE)
    const compression = flags & COMPRESSION_MASK
    if (compression !== NONE) {
      try {
        body = decompress(compression, body)
      } catch (err) {
        if (err instanceof CacheError) throw err
        throw new CacheError('E_DESERIALIZE', 'codec: the body does not decompress', { cause: err })
      }
    }
    try {
      return packr.unpack(body)
    } catch (err) {
      throw new CacheError('E_DESERIALIZE', 'codec: the body is not a value this codec wrote', { cause: err })
    }
  }

  const name = compressor === undefined ? 'msgpack' : `msgpack+${compressor.name}`
  return { name, encode, decode }
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0')
}

/** The codec remote stores use unless given another: MessagePack, no compression. */
export const defaultCodec: Codec = /* @__PURE__ */ createCodec()
