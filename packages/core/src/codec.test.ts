import { Buffer } from 'node:buffer'
import * as zlib from 'node:zlib'
import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { type Codec, type CodecCompression, crc32Fallback, createCodec, defaultCodec, hasZstd } from './codec.js'
import * as entry from './codec-entry.js'
import { isCacheError } from './errors.js'
import * as index from './index.js'
import { errorOf, random } from './test-helpers.js'

const codec = createCodec()
const ALGORITHMS: CodecCompression[] = ['gzip', 'brotli', 'zstd']
const AVAILABLE: CodecCompression[] = hasZstd() ? ALGORITHMS : ['gzip', 'brotli']

function roundTrip(value: unknown, c: Codec = codec): unknown {
  return c.decode(c.encode(value))
}

/** Header + body with a valid CRC, for inputs the encoder would never write. */
function seal(body: Uint8Array, flags = 0, version = 1): Uint8Array {
  const out = new Uint8Array(7 + body.length)
  out.set([0xc1, version, 0, 0, 0, 0, flags])
  out.set(body, 7)
  const crc = crc32Fallback(out.subarray(6))
  out[2] = crc >>> 24
  out[3] = crc >>> 16
  out[4] = crc >>> 8
  out[5] = crc
  return out
}

/** toStrictEqual walks a typed array element by element (seconds for 1 MB): compare big ones as bytes. */
function expectSameBytes(actual: unknown, expected: Uint8Array): void {
  expect(actual).toBeInstanceOf(expected.constructor)
  const a = actual as Uint8Array
  expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(expected)).toBe(true)
}

function deserializeError(fn: () => unknown) {
  const err = errorOf(fn)
  expect(err.code).toBe('E_DESERIALIZE')
  return err
}

function serializeError(value: unknown, c: Codec = codec) {
  const err = errorOf(() => c.encode(value))
  expect(err.code).toBe('E_SERIALIZE')
  return err
}

/** A value with every supported type, about 1 KB encoded: the sample the corruption tests damage. */
function sample() {
  return {
    id: 123456,
    name: 'Ada Lovelace — 数学者 🧮',
    createdAt: new Date(1_700_000_000_123),
    score: -12.75,
    big: 2n ** 80n + 1n,
    tags: new Set(['admin', 'beta']),
    prefs: new Map<unknown, unknown>([
      ['theme', 'dark'],
      [42, [1, undefined, null]],
    ]),
    avatar: new Uint8Array([0, 1, 2, 253, 254, 255]),
    raw: Buffer.from('buffer bytes'),
    pattern: /^a+b*$/giu,
    nested: { deep: { deeper: [{ x: 1 }, { x: 2, y: Number.NaN }, { x: Number.POSITIVE_INFINITY }] } },
    notes: Array.from({ length: 12 }, (_, i) => `note number ${i}: ${'lorem ipsum '.repeat(3)}`),
  }
}

describe('round trip', () => {
  const everyCodePoint = (() => {
    const chars: string[] = []
    for (let cp = 0; cp <= 0xffff; cp++) if (cp < 0xd800 || cp > 0xdfff) chars.push(String.fromCodePoint(cp))
    for (let cp = 0x10000; cp <= 0x10ffff; cp += 97) chars.push(String.fromCodePoint(cp))
    return chars.join('')
  })()

  it.each<[string, unknown]>([
    ['null', null],
    ['undefined (top level)', undefined],
    ['true', true],
    ['false', false],
    ['0', 0],
    ['small ints', [1, -1, 31, 127, 128, 255, 256, -32, -33, -128, -129]],
    ['32-bit edges', [2 ** 31 - 1, -(2 ** 31), 2 ** 32 - 1, 2 ** 32]],
    ['safe integer edges', [Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 53 + 2]],
    ['floats', [1.5, -0.1, 1e-300, 5e-324, Number.MAX_VALUE, Number.EPSILON, Math.PI]],
    ['NaN and infinities', [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]],
    ['empty string', ''],
    ['ascii', 'hello world'],
    ['emoji, ZWJ sequences and flags', '😀 👩‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 👍🏽'],
    ['CJK, RTL, combining marks', '中文 日本語 한국어 العربية עברית é (e\u0301) Z̤͔ͧ̑̓'],
    ['NUL, control characters, U+FFFD, BOM', '\u0000\u0001\u001f\u007f\ufffd\ufeff'],
    ['every BMP code point and a spread of astral ones', everyCodePoint],
    ['BigInt within 64 bits', [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n]],
    ['BigInt beyond 64 bits', [2n ** 64n, -(2n ** 64n) - 1n, 2n ** 1000n + 7n, -(2n ** 5000n) + 3n, 2n ** 70_000n]],
    ['dates', [new Date(0), new Date(1_700_000_000_123), new Date(-1), new Date(-86_400_001), new Date(8.64e15)]],
    ['more dates', [new Date(-8.64e15), new Date('1969-12-31T23:59:59.999Z'), new Date('2500-01-01T00:00:00.001Z')]],
    [
      'Map with mixed keys',
      new Map<unknown, unknown>([
        [1, 'a'],
        ['1', 'b'],
        [{ o: 1 }, [2]],
        [null, undefined],
      ]),
    ],
    ['nested and empty Maps', new Map([['inner', new Map([['x', new Map()]])]])],
    ['Set', new Set<unknown>([1, '1', { a: 1 }, [2], null, undefined, 2n])],
    ['empty Set', new Set()],
    ['Uint8Array', new Uint8Array([0, 1, 127, 128, 255])],
    ['empty Uint8Array', new Uint8Array(0)],
    ['Buffer', Buffer.from('bytes \u00ff', 'utf8')],
    ['empty Buffer', Buffer.alloc(0)],
    [
      'typed arrays',
      [new Int8Array([-128, 127]), new Uint8ClampedArray([0, 255]), new Int16Array([-3]), new Uint16Array([65535])],
    ],
    ['more typed arrays', [new Int32Array([-1]), new Uint32Array([2 ** 32 - 1]), new Float32Array([1.5, -0])]],
    [
      '64-bit typed arrays',
      [new Float64Array([Math.PI, -0, Number.NaN]), new BigInt64Array([-1n]), new BigUint64Array([1n])],
    ],
    ['ArrayBuffer and DataView', [new Uint8Array([1, 2, 3]).buffer, new DataView(new Uint8Array([4, 5]).buffer)]],
    ['RegExp', [/a\sb/, /x/gimsuy, /[😀-🙏]+/u, /(?:)/]],
    ['undefined inside arrays and objects', { list: [1, undefined, 3, undefined], o: { a: undefined, b: null } }],
    ['empty containers', { o: {}, a: [], nestedEmpty: [[], [{}]] }],
    ['awkward keys', { '': 1, '0': 2, '01': 3, 'a.b': 4, 'a b': 5, 'ключ 🔑': 6, constructor: 7, toString: 8 }],
    ['nested combination', sample()],
    ['an array of many object shapes', Array.from({ length: 500 }, (_, i) => ({ [`k${i}`]: i, common: i % 3 }))],
    ['one object with 70 000 keys', Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`key${i}`, i]))],
  ])('%s', (_, value) => {
    expect(roundTrip(value)).toStrictEqual(value)
  })

  it('keeps the class of every binary type: a Buffer stays a Buffer, a Uint8Array stays a Uint8Array', () => {
    const back = roundTrip({ u8: new Uint8Array([1]), buf: Buffer.from([1]), f32: new Float32Array([1]) }) as Record<
      string,
      unknown
    >
    expect(Buffer.isBuffer(back.buf)).toBe(true)
    expect(back.u8).toBeInstanceOf(Uint8Array)
    expect(Buffer.isBuffer(back.u8)).toBe(false)
    expect(back.f32).toBeInstanceOf(Float32Array)
    // whatever class the bytes arrive in (a store may hand a plain Uint8Array)
    expect(Buffer.isBuffer(codec.decode(Uint8Array.from(codec.encode(Buffer.from([1])))))).toBe(true)
  })

  it('stores only the bytes a view covers (a pooled Buffer, a typed array into a larger ArrayBuffer)', () => {
    const pooled = Buffer.from('small') // a slice of Node's shared 8 KB pool
    expect(pooled.buffer.byteLength).toBeGreaterThan(pooled.length)
    const big = new ArrayBuffer(64)
    const view = new Uint16Array(big, 8, 2).fill(7)
    const back = roundTrip({ pooled, view }) as { pooled: Buffer; view: Uint16Array }
    expect(back.pooled).toStrictEqual(pooled)
    expect(back.view).toStrictEqual(view)
    expect(back.view.buffer.byteLength).toBe(4)
    expect(codec.encode({ pooled, view }).length).toBeLessThan(200)
  })

  it('keeps shared references and cycles (structured-clone semantics)', () => {
    const shared = { id: 1 }
    const cyclic: Record<string, unknown> = { name: 'root', list: [] as unknown[] }
    cyclic.self = cyclic
    ;(cyclic.list as unknown[]).push(cyclic, shared, shared)
    const map = new Map<string, unknown>()
    map.set('me', map)
    const set = new Set<unknown>()
    set.add(set)
    const back = roundTrip({ cyclic, map, set, a: shared, b: shared }) as {
      cyclic: { self: unknown; list: unknown[] }
      map: Map<string, unknown>
      set: Set<unknown>
      a: unknown
      b: unknown
    }
    expect(back.cyclic.self).toBe(back.cyclic)
    expect(back.cyclic.list[0]).toBe(back.cyclic)
    expect(back.cyclic.list[1]).toBe(back.a)
    expect(back.a).toBe(back.b)
    expect(back.a).toStrictEqual({ id: 1 })
    expect(back.map.get('me')).toBe(back.map)
    expect([...back.set][0]).toBe(back.set)
  })

  it('walks a deep DAG of shared nodes once, not once per path', () => {
    // 60 levels, each referencing the one below twice: 2^60 paths. A naive walk would never finish.
    let node: Record<string, unknown> = { leaf: true }
    for (let i = 0; i < 60; i++) node = { a: node, b: node, i }
    const back = roundTrip(node) as { a: unknown; b: unknown }
    expect(back.a).toBe(back.b)
  })

  it('handles containers nested 500 deep, and refuses deeper ones with E_SERIALIZE', () => {
    const nest = (depth: number, wrap: (inner: unknown) => unknown) => {
      let value: unknown = 'bottom'
      for (let i = 0; i < depth; i++) value = wrap(value)
      return value
    }
    for (const wrap of [(d: unknown) => ({ d }), (d: unknown) => [d], (d: unknown) => new Map([[1, d]])]) {
      const deepest = nest(500, wrap)
      expect(roundTrip(deepest)).toStrictEqual(deepest)
      expect(serializeError(nest(501, wrap)).message).toMatch(/nested more than 500 deep/)
    }
    const err = serializeError(nest(200_000, (d) => [d]))
    expect(err.message).toMatch(
      /^\[@cache\/core\] codec: cannot encode value\[0\]\[0\].*….*\[0\]: containers nested more than 500 deep/,
    )
    expect(err.message.length).toBeLessThan(400) // the path is shortened
  })

  it('round-trips large values (1 MB string, 1 MB of bytes, 10 000 objects)', () => {
    const text = 'a😀中'.repeat(1 << 17) // ~1 MB of UTF-8
    const bytes = new Uint8Array(1 << 20).map((_, i) => (i * 31) & 0xff)
    const rows = Array.from({ length: 10_000 }, (_, i) => ({ id: i, name: `row ${i}`, at: new Date(i) }))
    for (const value of [text, bytes, rows]) expect(codec.encode(value).length).toBeGreaterThan(200_000)
    expect(roundTrip(text)).toBe(text)
    expectSameBytes(roundTrip(bytes), bytes)
    expect(roundTrip(rows)).toStrictEqual(rows)
  })

  it('documented losses: -0, sparse holes, null prototypes, symbol keys, non-enumerable and extra array properties', () => {
    expect(Object.is(roundTrip(-0), 0)).toBe(true) // MessagePack integers have no negative zero
    expect(Object.is((roundTrip(new Float64Array([-0])) as Float64Array)[0], -0)).toBe(true) // but float arrays do
    // biome-ignore lint/suspicious/noSparseArray: the hole is the point
    const sparse = roundTrip([1, , 3]) as unknown[]
    expect(sparse).toHaveLength(3)
    expect(1 in sparse).toBe(true) // the hole comes back as undefined
    expect(sparse[1]).toBeUndefined()
    const bare = Object.assign(Object.create(null) as object, { a: 1 })
    const back = roundTrip(bare) as object
    expect(back).toStrictEqual({ a: 1 })
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype)
    const withExtras = Object.defineProperty({ [Symbol('s')]: 1, kept: 2 }, 'hidden', { value: 3, enumerable: false })
    expect(roundTrip(withExtras)).toStrictEqual({ kept: 2 })
    const array = Object.assign([1, 2], { extra: 'dropped' })
    expect(roundTrip(array)).toStrictEqual([1, 2])
    expect(
      roundTrip({
        get computed() {
          return 5
        },
      }),
    ).toStrictEqual({ computed: 5 }) // getters are read once
    const regex = /a/g
    regex.lastIndex = 3
    expect((roundTrip(regex) as RegExp).lastIndex).toBe(0) // as structuredClone
    const views = (() => {
      const ab = new ArrayBuffer(4)
      return roundTrip([new Uint8Array(ab), new Uint8Array(ab, 2)]) as Uint8Array[]
    })()
    expect(views[0]!.buffer).not.toBe(views[1]!.buffer) // views on one ArrayBuffer come back independent
    expect(Number.isNaN((roundTrip(new Date(Number.NaN)) as Date).getTime())).toBe(true) // Invalid Date stays one
  })

  it('decoded binary shares no memory with the input bytes', () => {
    const encoded = codec.encode({ u: new Uint8Array([1, 2, 3]), b: Buffer.from([4, 5]) })
    const input = Buffer.from(encoded)
    const back = codec.decode(input) as { u: Uint8Array; b: Buffer }
    input.fill(0)
    expect(back.u).toStrictEqual(new Uint8Array([1, 2, 3]))
    expect(back.b).toStrictEqual(Buffer.from([4, 5]))
  })

  it('decodes bytes at any offset of a larger buffer, and a plain Uint8Array as well as a Buffer', () => {
    const encoded = codec.encode(sample())
    for (const offset of [0, 1, 3, 7, 13]) {
      const holder = new Uint8Array(offset + encoded.length + 5)
      holder.set(encoded, offset)
      expect(codec.decode(holder.subarray(offset, offset + encoded.length))).toStrictEqual(sample())
    }
  })

  it('gives bytes that stay valid while the codec encodes more values', () => {
    const first = codec.encode(sample())
    const snapshot = Buffer.from(first) // a copy
    for (let i = 0; i < 2_000; i++) codec.encode({ i, filler: 'x'.repeat(i % 300) })
    codec.encode('y'.repeat(100_000))
    expect(first).toStrictEqual(snapshot)
    expect(codec.decode(first)).toStrictEqual(sample())
  })

  it('bytes from one codec decode with any other, in any order (every value is self-contained)', () => {
    const values = [{ a: 1, b: 2 }, [{ c: 'x' }, { c: 'y', d: [{ e: 1 }] }], new Map([['k', { z: true }]]), sample()]
    const encoded = values.map((v) => codec.encode(v))
    const gzip = createCodec({ compression: 'gzip', compressAbove: 0 })
    for (const reader of [createCodec(), gzip, codec, defaultCodec]) {
      for (const i of [3, 0, 2, 1, 0, 3]) expect(reader.decode(encoded[i]!)).toStrictEqual(values[i])
    }
    for (const algorithm of AVAILABLE) {
      const bytes = createCodec({ compression: algorithm, compressAbove: 0 }).encode(values[3])
      expect(codec.decode(bytes)).toStrictEqual(values[3])
    }
  })

  it('decodes bytes written by format version 1 (a pinned sample: stored entries stay readable)', () => {
    const v1 = Buffer.from(
      'c101778894e900d4724097a173a16ea3626967a164a16da175a162b268c3a96c6c6f20f09f988020e4b8ade696879701ffcb3ff80000000' +
        '00000c0d40000c3cb7ff8000000000000d84200000000000000400000000000000000d7ff1d5353006553f10082a16bd473009201a17802d' +
        '4724191a66e657374656490c70374010102c4026869',
      'hex',
    )
    expect(codec.decode(v1)).toStrictEqual({
      s: 'héllo 😀 中文',
      n: [1, -1, 1.5, null, undefined, true, Number.NaN],
      big: 2n ** 70n,
      d: new Date(1_700_000_000_123),
      m: new Map<unknown, unknown>([
        ['k', new Set([1, 'x'])],
        [2, { nested: [] }],
      ]),
      u: new Uint8Array([1, 2]),
      b: Buffer.from('hi'),
    })
    const gzipped = Buffer.from(
      'c1010e15b400011f8b0800000000000003bb52e4307149496a45c9cd698949c98310010022962c48a1000000',
      'hex',
    )
    expect(codec.decode(gzipped)).toStrictEqual({ text: 'abc'.repeat(50) })
  })
})

describe('values it refuses (E_SERIALIZE, naming the problem and where it is)', () => {
  class User {
    name = 'ada'
  }
  class MyError extends Error {
    code = 42
  }
  class MyMap extends Map {}
  class MySet extends Set {}
  class MyArray extends Array {}
  class MyDate extends Date {}
  class MyBytes extends Uint8Array {}
  const MyBuffer = class MyBuf {}
  Object.setPrototypeOf(MyBuffer.prototype, Buffer.prototype)

  it.each<[string, unknown, RegExp]>([
    ['a function', () => 1, /^\[@cache\/core\] codec: cannot encode value: a function/],
    ['a named function in an object', { save: function save() {} }, /value\.save: a function \(save\)/],
    ['a method', { m() {} }, /value\.m: a function/],
    ['an object with a toJSON function', { a: 1, toJSON: () => 'x' }, /value\.toJSON: a function/],
    ['a function in a Map', new Map([['k', () => 1]]), /<Map entry 0 value>: a function/],
    ['a function as a Map key', new Map([[() => 1, 'v']]), /<Map entry 0 key>: a function/],
    ['a function in a Set', new Set([1, () => 1]), /<Set item 1>: a function/],
    ['a symbol', Symbol('s'), /a symbol \(Symbol\(s\)\)/],
    ['a symbol in an array', { list: [1, 2, Symbol.iterator] }, /value\.list\[2\]: a symbol/],
    ['a class instance', new User(), /value: an instance of User/],
    ['a nested class instance', { rows: [{ owner: new User() }] }, /value\.rows\[0\]\.owner: an instance of User/],
    ['an anonymous class instance', new (class {})(), /an instance of an anonymous class/],
    ['an Error', new Error('boom'), /an Error \(Error: 'boom'\)/],
    ['a TypeError', { e: new TypeError('bad') }, /value\.e: an Error \(TypeError/],
    ['an Error subclass', new MyError('x'), /an Error \(MyError/],
    ['a Map subclass', new MyMap(), /an instance of MyMap, a subclass of Map/],
    ['a Set subclass', new MySet(), /an instance of MySet, a subclass of Set/],
    ['an Array subclass', MyArray.from([1]), /an instance of MyArray, a subclass of Array/],
    ['a Date subclass', new MyDate(), /an instance of MyDate, a subclass of Date/],
    ['a typed array subclass', new MyBytes(2), /an instance of MyBytes, a subclass of Uint8Array/],
    ['a Float64Array subclass', new (class F64 extends Float64Array {})(1), /F64, a subclass of Float64Array/],
    ['a Buffer subclass', Object.setPrototypeOf(Buffer.from('x'), MyBuffer.prototype), /MyBuf, a subclass of Buffer/],
    ['a subclass of a subclass', new (class Sub2 extends MyMap {})(), /Sub2, a subclass of Map/],
    ['a boxed number', new Number(1), /an instance of Number/],
    ['a boxed string', { s: new String('s') }, /value\.s: an instance of String/],
    ['a WeakMap', new WeakMap(), /an instance of WeakMap/],
    ['a Promise', Promise.resolve(1), /an instance of Promise/],
    ['a SharedArrayBuffer', new SharedArrayBuffer(4), /an instance of SharedArrayBuffer/],
    ['a lone high surrogate', 'abc\ud800', /a string with a lone UTF-16 surrogate/],
    ['a lone low surrogate in a key', { '\udc00k': 1 }, /lone UTF-16 surrogate/],
    ['a reversed surrogate pair', ['\ude00\ud83d'], /value\[0\]: a string with a lone UTF-16 surrogate/],
    ['a surrogate half from slicing an emoji', { title: 'hi 😀'.slice(0, 4) }, /value\.title: a string with a lone/],
    ['an own "__proto__" property', JSON.parse('{"a":{"__proto__":{"x":1}}}'), /value\.a\.__proto__: an own property/],
    ['a key that needs quoting', { 'a b': [new WeakSet()] }, /value\["a b"\]\[0\]: an instance of WeakSet/],
  ])('%s', (_, value, message) => {
    const err = serializeError(value)
    expect(err.message).toMatch(message)
    expect(isCacheError(err, 'E_SERIALIZE')).toBe(true)
  })

  it('names the path in a big value and in a cyclic one too', () => {
    const rows: unknown[] = Array.from({ length: 10_000 }, (_, i) => ({ id: i, tags: [`t${i}`] }))
    rows.push({ id: 'last', owner: new User() })
    expect(serializeError(rows).message).toMatch(/value\[10000\]\.owner: an instance of User/)
    const cyclic: Record<string, unknown> = { list: [] }
    cyclic.self = cyclic
    ;(cyclic.list as unknown[]).push(cyclic, { fn: () => 1 })
    expect(serializeError(cyclic).message).toMatch(/value\.list\[1\]\.fn: a function/)
  })

  it('keeps what a throwing getter threw as the cause', () => {
    const boom = new Error('getter failed')
    const err = serializeError({
      get bad() {
        throw boom
      },
    })
    expect(err.cause).toBe(boom)
    expect(err.message).toMatch(/getter failed/)
  })

  it('never turns a refused value into something else: every codec refuses, and stays usable after', () => {
    for (const algorithm of AVAILABLE) {
      const c = createCodec({ compression: algorithm, compressAbove: 0 })
      serializeError({ big: 'x'.repeat(5_000), f: () => 1 }, c)
      expect(roundTrip(sample(), c)).toStrictEqual(sample())
    }
    serializeError(new User())
    expect(roundTrip(sample())).toStrictEqual(sample())
  })
})

describe('compression', () => {
  const compressible = {
    text: 'the same words again and again, '.repeat(400),
    list: Array.from({ length: 200 }, () => 7),
  }

  it.each(AVAILABLE)('%s: compresses a body above the threshold, and round-trips it', (algorithm) => {
    const c = createCodec({ compression: algorithm })
    expect(c.name).toBe(`msgpack+${algorithm}`)
    const plain = codec.encode(compressible)
    const packed = c.encode(compressible)
    expect(packed[6]).toBe(ALGORITHMS.indexOf(algorithm) + 1)
    expect(packed.length).toBeLessThan(plain.length / 5)
    expect(c.decode(packed)).toStrictEqual(compressible)
  })

  it.each(AVAILABLE)('%s: leaves a body at or below the threshold alone', (algorithm) => {
    const c = createCodec({ compression: algorithm, compressAbove: 1024 })
    // A string of n < 65 536 chars packs into n + 3 bytes.
    const atThreshold = 'a'.repeat(1024 - 3)
    expect(codec.encode(atThreshold).length - 7).toBe(1024)
    expect(c.encode(atThreshold)).toStrictEqual(codec.encode(atThreshold))
    expect(c.encode(atThreshold)[6]).toBe(0)
    const justAbove = 'a'.repeat(1024 - 2)
    expect(c.encode(justAbove)[6]).toBe(ALGORITHMS.indexOf(algorithm) + 1)
    expect(c.decode(c.encode(justAbove))).toBe(justAbove)
    expect(c.encode({ small: 1 })).toStrictEqual(codec.encode({ small: 1 }))
  })

  it.each(AVAILABLE)('%s: stores incompressible data uncompressed rather than grow it', (algorithm) => {
    const next = random(7)
    const noise = new Uint8Array(8_192).map(() => Math.floor(next() * 256))
    const c = createCodec({ compression: algorithm, compressAbove: 0 })
    const encoded = c.encode(noise)
    expect(encoded[6]).toBe(0)
    expect(encoded).toStrictEqual(codec.encode(noise))
    expect(c.decode(encoded)).toStrictEqual(noise)
  })

  it.each(AVAILABLE)('%s: round-trips the sample and 1 MB values at its lowest and highest level', (algorithm) => {
    const levels = { gzip: [1, 9], brotli: [0, 11], zstd: [1, 22] }[algorithm]
    const big = { text: 'x😀y'.repeat(100_000), bytes: new Uint8Array(300_000).fill(9) }
    for (const level of levels) {
      const c = createCodec({ compression: algorithm, compressAbove: 0, level })
      expect(roundTrip(sample(), c)).toStrictEqual(sample())
      if (level !== levels[0]) continue
      const back = roundTrip(big, c) as typeof big
      expect(back.text).toBe(big.text)
      expectSameBytes(back.bytes, big.bytes)
    }
  })

  it('zstd: available when node:zlib has it, else E_INVALID_OPTION naming the Node.js it needs', () => {
    if (hasZstd()) {
      expect(createCodec({ compression: 'zstd' }).name).toBe('msgpack+zstd')
      return
    }
    const err = errorOf(() => createCodec({ compression: 'zstd' }))
    expect(err.code).toBe('E_INVALID_OPTION')
    expect(err.message).toMatch(/22\.15/)
  })

  it('zstd: an entry written with zstd is E_DESERIALIZE where Node.js lacks it (or its body is not zstd)', () => {
    const err = deserializeError(() => codec.decode(seal(pack('not zstd'), 3)))
    if (!hasZstd()) expect(err.message).toMatch(/zstd, which this Node\.js/)
  })

  it.each<[string, unknown]>([
    ['an unknown algorithm', { compression: 'lz4' }],
    ['compression true', { compression: true }],
    ['a negative threshold', { compressAbove: -1 }],
    ['a fractional threshold', { compressAbove: 1.5 }],
    ['a NaN threshold', { compressAbove: Number.NaN }],
    ['a string threshold', { compressAbove: '1kb' }],
    ['gzip level 0', { compression: 'gzip', level: 0 }],
    ['gzip level 10', { compression: 'gzip', level: 10 }],
    ['brotli level 12', { compression: 'brotli', level: 12 }],
    ['a fractional level', { compression: 'gzip', level: 2.5 }],
    ['a level without compression', { level: 5 }],
    ['options that are not an object', 'gzip'],
    ['null options', null],
  ])('refuses %s with E_INVALID_OPTION', (_, options) => {
    const err = errorOf(() => createCodec(options as never))
    expect(err.code).toBe('E_INVALID_OPTION')
    expect(err.message).toMatch(/createCodec: /)
  })

  it('names each codec', () => {
    expect(codec.name).toBe('msgpack')
    expect(defaultCodec.name).toBe('msgpack')
    expect(createCodec({ compression: false }).name).toBe('msgpack')
    expect(createCodec({ compression: 'brotli' }).name).toBe('msgpack+brotli')
  })
})

describe('header and integrity (E_DESERIALIZE, never garbage, never another error)', () => {
  it('lays out magic, version, CRC-32 and flags as documented', () => {
    const bytes = codec.encode(null)
    const crc = crc32Fallback(Uint8Array.of(0x00, 0xc0))
    expect([...bytes]).toStrictEqual([
      0xc1,
      0x01,
      crc >>> 24,
      (crc >>> 16) & 0xff,
      (crc >>> 8) & 0xff,
      crc & 0xff,
      0,
      0xc0,
    ])
  })

  it('refuses input too short for the header: empty, 1 byte, 6 bytes', () => {
    expect(deserializeError(() => codec.decode(new Uint8Array(0))).message).toMatch(/0 bytes is too short/)
    expect(deserializeError(() => codec.decode(Uint8Array.of(0xc1))).message).toMatch(/1 bytes is too short/)
    expect(deserializeError(() => codec.decode(codec.encode(1).subarray(0, 6))).message).toMatch(/too short/)
  })

  it('refuses a wrong magic byte', () => {
    for (const first of [0x00, 0x7b, 0x82, 0xc0, 0xc2, 0xff]) {
      const bytes = Uint8Array.from(codec.encode(sample()))
      bytes[0] = first
      expect(deserializeError(() => codec.decode(bytes)).message).toMatch(/not written by the @cache\/core codec/)
    }
  })

  it('refuses a future format version as such, and version 0 as unknown', () => {
    const future = seal(pack(1), 0, 2)
    expect(deserializeError(() => codec.decode(future)).message).toMatch(/format version 2 is newer/)
    expect(deserializeError(() => codec.decode(seal(pack(1), 0, 0xff))).message).toMatch(/version 255 is newer/)
    expect(deserializeError(() => codec.decode(seal(pack(1), 0, 0))).message).toMatch(/unknown format version 0/)
  })

  it('refuses reserved flag bits and unknown compression ids, even with a valid checksum', () => {
    for (const flags of [0x10, 0x80, 0x11]) {
      expect(deserializeError(() => codec.decode(seal(pack(1), flags))).message).toMatch(/unknown flags/)
    }
    for (const id of [4, 9, 15]) {
      expect(deserializeError(() => codec.decode(seal(pack(1), id))).message).toMatch(/unknown compression/)
    }
  })

  it('refuses a body that is not ours even with a valid checksum, keeping the cause', () => {
    const cases = [
      seal(Uint8Array.of()), // no body
      seal(Uint8Array.of(0x92, 0x01)), // an array of 2 with 1 item
      seal(Uint8Array.of(0x01, 0x02)), // trailing bytes after a value
      seal(Uint8Array.of(0xd4, 0x72, 0x40)), // a record definition with nothing after it
      seal(pack('plain'), 1), // flagged gzip, not gzip
      seal(pack('plain'), 2), // flagged brotli, not brotli
      seal(zlib.gzipSync(Uint8Array.of(0x92, 0x01)), 1), // gzip of a broken body
    ]
    for (const bytes of cases) {
      const err = deserializeError(() => codec.decode(bytes))
      expect(err.cause).toBeInstanceOf(Error)
    }
  })

  it.each(['plain', ...AVAILABLE])('%s: every truncation and every extension is refused', (mode) => {
    const c = mode === 'plain' ? codec : createCodec({ compression: mode as CodecCompression, compressAbove: 0 })
    const bytes = c.encode(sample())
    expect(c.decode(bytes)).toStrictEqual(sample())
    for (let length = 0; length < bytes.length; length++) {
      deserializeError(() => c.decode(bytes.subarray(0, length)))
    }
    for (const extra of [Uint8Array.of(0), Uint8Array.of(0xc0), new Uint8Array(16)]) {
      const longer = new Uint8Array(bytes.length + extra.length)
      longer.set(bytes)
      longer.set(extra, bytes.length)
      deserializeError(() => c.decode(longer))
    }
  })

  it.each(['plain', ...AVAILABLE])('%s: every single-bit flip anywhere is detected', (mode) => {
    const c = mode === 'plain' ? codec : createCodec({ compression: mode as CodecCompression, compressAbove: 0 })
    const bytes = c.encode(sample())
    expect(bytes.length).toBeGreaterThan(100)
    const copy = Uint8Array.from(bytes)
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      copy[bit >> 3]! ^= 1 << (bit & 7)
      deserializeError(() => c.decode(copy))
      copy[bit >> 3]! ^= 1 << (bit & 7)
    }
    expect(c.decode(copy)).toStrictEqual(sample())
  })

  it('random multi-bit damage and overwritten runs of bytes are detected (seeded)', () => {
    const next = random(20_261_121)
    const bytes = codec.encode(sample())
    for (let trial = 0; trial < 3_000; trial++) {
      const copy = Uint8Array.from(bytes)
      if (trial % 2 === 0) {
        const flips = 2 + Math.floor(next() * 8)
        for (let f = 0; f < flips; f++) copy[Math.floor(next() * copy.length)]! ^= 1 << Math.floor(next() * 8)
      } else {
        const start = Math.floor(next() * copy.length)
        const run = 1 + Math.floor(next() * 16)
        for (let i = start; i < Math.min(copy.length, start + run); i++) copy[i] = Math.floor(next() * 256)
      }
      if (copy.every((b, i) => b === bytes[i])) continue // the damage happened to cancel out
      deserializeError(() => codec.decode(copy))
    }
  })

  it('refuses foreign bytes: JSON, text, raw MessagePack, gzip, random bytes', () => {
    const foreign = [
      Buffer.from(JSON.stringify({ a: 1, b: [true, null] })),
      Buffer.from('hello, plain text'),
      Buffer.from('\ufeff{"bom": 1}'),
      pack({ id: 1, name: 'raw msgpack without our header' }),
      pack(null),
      zlib.gzipSync(pack({ a: 1 })),
      zlib.brotliCompressSync(codec.encode({ a: 1 })),
    ]
    const next = random(99)
    for (let i = 0; i < 500; i++) {
      foreign.push(Buffer.from(Array.from({ length: Math.floor(next() * 200) }, () => Math.floor(next() * 256))))
    }
    for (let i = 0; i < 500; i++) {
      // Random bodies behind our own magic and version: only the checksum stands in the way.
      const body = Array.from({ length: 5 + Math.floor(next() * 100) }, () => Math.floor(next() * 256))
      foreign.push(Buffer.from([0xc1, 0x01, ...body]))
    }
    for (const bytes of foreign) deserializeError(() => codec.decode(bytes))
  })

  it('refuses input that is not bytes', () => {
    for (const input of ['c101', null, undefined, 42, [0xc1, 1], new ArrayBuffer(8), { length: 8 }]) {
      expect(deserializeError(() => codec.decode(input as never)).message).toMatch(/expected bytes/)
    }
  })
})

describe('CRC-32', () => {
  it('has the standard check value, chains, and matches node:zlib where Node has it', () => {
    const check = Buffer.from('123456789')
    expect(crc32Fallback(check)).toBe(0xcbf43926)
    expect(crc32Fallback(check.subarray(4), crc32Fallback(check.subarray(0, 4)))).toBe(0xcbf43926)
    expect(crc32Fallback(new Uint8Array(0))).toBe(0)
    if (typeof zlib.crc32 !== 'function') return
    const next = random(5)
    for (let i = 0; i < 200; i++) {
      const data = Uint8Array.from({ length: Math.floor(next() * 3_000) }, () => Math.floor(next() * 256))
      expect(crc32Fallback(data)).toBe(zlib.crc32(data))
    }
  })
})

describe('exports', () => {
  it('are on @cache/core/codec, and not on the main entry (memory-only users never load msgpackr)', () => {
    expect(entry.createCodec).toBe(createCodec)
    expect(entry.defaultCodec).toBe(defaultCodec)
    expect(entry.hasZstd).toBe(hasZstd)
    expect('createCodec' in index).toBe(false)
    expect(defaultCodec.decode(defaultCodec.encode(sample()))).toStrictEqual(sample())
  })
})
