import { Buffer } from 'node:buffer'
import { isDeepStrictEqual } from 'node:util'
import { createCodec, defaultCodec } from '@cache/core/codec'
import { prng } from './data.js'
import { type HarnessOptions, runThroughput, type ThroughputResult } from './harness.js'

/** Distinct objects per size: one pass encodes and decodes each once. */
const OBJECTS = 8
/** Orders in the ~100 KB object (a page of search results). */
const PAGE_ORDERS = 100

// biome-ignore format: a word list
const WORDS = [
  'alpha', 'basket', 'cobalt', 'delta', 'ember', 'fjord', 'garnet', 'harbor', 'indigo', 'juniper', 'kestrel', 'lumen',
  'meadow', 'nickel', 'orchid', 'pepper', 'quartz', 'russet', 'saffron', 'timber', 'umber', 'velvet', 'willow', 'zephyr',
]

type Order = ReturnType<typeof makeOrder>

/** A JSON-like order of about 1 KB: nested objects, strings, integers, decimals, booleans, null, arrays. */
function makeOrder(random: () => number, id: number) {
  const word = () => WORDS[Math.floor(random() * WORDS.length)]!
  const items = []
  const lines = 3 + Math.floor(random() * 2)
  for (let i = 0; i < lines; i++) {
    items.push({
      sku: `SKU-${Math.floor(random() * 1e6)}`,
      title: `${word()} ${word()} ${word()}`,
      quantity: 1 + Math.floor(random() * 5),
      unitPrice: Math.round(random() * 10_000) / 100,
      discount: random() < 0.3 ? Math.round(random() * 2_000) / 100 : null,
      attributes: { color: word(), size: ['S', 'M', 'L', 'XL'][Math.floor(random() * 4)]! },
    })
  }
  return {
    id,
    number: `ORD-2026-${String(id).padStart(7, '0')}`,
    status: ['pending', 'paid', 'shipped', 'delivered'][Math.floor(random() * 4)]!,
    createdAt: new Date(1_780_000_000_000 + Math.floor(random() * 1e10)).toISOString(),
    customer: {
      id: Math.floor(random() * 1e7),
      name: `${word()} ${word()}`,
      email: `${word()}.${word()}@example.com`,
      vip: random() < 0.1,
      address: { street: `${Math.floor(random() * 999)} ${word()} street`, city: word(), zip: '75011', country: 'FR' },
    },
    items,
    total: Math.round(random() * 100_000) / 100,
    currency: 'EUR',
    tags: [word(), word(), word()],
    notes: random() < 0.5 ? `${word()} ${word()} ${word()} ${word()} ${word()} ${word()}` : null,
  }
}

function makePage(random: () => number, page: number): { page: number; total: number; orders: Order[] } {
  const orders: Order[] = []
  for (let i = 0; i < PAGE_ORDERS; i++) orders.push(makeOrder(random, page * PAGE_ORDERS + i))
  return { page, total: 10_000, orders }
}

const jsonBytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v))
const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length

/**
 * CODEC: encode + decode round trip of a ~1 KB and a ~100 KB object with `defaultCodec` (MessagePack, header, CRC)
 * against `JSON.stringify` + `Buffer.from` / `buf.toString` + `JSON.parse` (both go to bytes and back), plus the
 * encoded sizes of JSON, the codec, and the codec with gzip and brotli.
 */
export async function codec(opts: HarnessOptions): Promise<ThroughputResult> {
  const random = prng(2026)
  const small = Array.from({ length: OBJECTS }, (_, i) => makeOrder(random, i))
  const large = Array.from({ length: OBJECTS }, (_, i) => makePage(random, i))
  const gzip = createCodec({ compression: 'gzip', compressAbove: 0 })
  const brotli = createCodec({ compression: 'brotli', compressAbove: 0 })

  // Every codec must give the value back exactly (JSON can: the data is JSON-only on purpose).
  for (const v of [...small, ...large]) {
    for (const c of [defaultCodec, gzip, brotli]) {
      if (!isDeepStrictEqual(c.decode(c.encode(v)), v)) throw new Error(`[bench] CODEC: ${c.name} round trip differs`)
    }
    if (!isDeepStrictEqual(JSON.parse(Buffer.from(JSON.stringify(v)).toString()), v)) {
      throw new Error('[bench] CODEC: JSON round trip differs')
    }
  }

  const sizes = (set: unknown[]) => ({
    json: avg(set.map(jsonBytes)),
    msgpack: avg(set.map((v) => defaultCodec.encode(v).byteLength)),
    gzip: avg(set.map((v) => gzip.encode(v).byteLength)),
    brotli: avg(set.map((v) => brotli.encode(v).byteLength)),
  })
  const s = sizes(small)
  const l = sizes(large)
  const row = (name: string, a: number, b: number) =>
    `${name}: ~1 KB object ${a.toFixed(0)} B (${((a / s.json) * 100).toFixed(0)} % of JSON), ` +
    `~100 KB object ${b.toFixed(0)} B (${((b / l.json) * 100).toFixed(0)} % of JSON)`

  const S = ' (~1 KB)'
  const L = ' (~100 KB)'
  const ours = 'defaultCodec encode+decode'
  const json = 'JSON.stringify+Buffer.from / toString+JSON.parse'

  return runThroughput(
    {
      id: 'CODEC',
      title: 'encode + decode round trip: defaultCodec (msgpack) vs JSON to bytes and back',
      opsPerPass: OBJECTS,
      contenders: [
        {
          name: ours + S,
          kind: 'ours',
          expectPerPass: OBJECTS,
          batch(passes) {
            let n = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < OBJECTS; i++) if (defaultCodec.decode(defaultCodec.encode(small[i])) !== null) n++
            }
            return n
          },
        },
        {
          name: json + S,
          kind: 'anchor',
          expectPerPass: OBJECTS,
          batch(passes) {
            let n = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < OBJECTS; i++) {
                const bytes = Buffer.from(JSON.stringify(small[i]), 'utf8')
                if (JSON.parse(bytes.toString('utf8')) !== null) n++
              }
            }
            return n
          },
        },
        {
          name: ours + L,
          kind: 'ours',
          expectPerPass: OBJECTS,
          batch(passes) {
            let n = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < OBJECTS; i++) if (defaultCodec.decode(defaultCodec.encode(large[i])) !== null) n++
            }
            return n
          },
        },
        {
          name: json + L,
          kind: 'anchor',
          expectPerPass: OBJECTS,
          batch(passes) {
            let n = 0
            for (let p = 0; p < passes; p++) {
              for (let i = 0; i < OBJECTS; i++) {
                const bytes = Buffer.from(JSON.stringify(large[i]), 'utf8')
                if (JSON.parse(bytes.toString('utf8')) !== null) n++
              }
            }
            return n
          },
        },
      ],
      pairs: [
        { ours: ours + S, anchor: json + S },
        { ours: ours + L, anchor: json + L },
      ],
      notes: [
        `${OBJECTS} distinct objects per size, built before timing from a seeded PRNG: an order (customer, address, ` +
          `3-4 line items, tags, ISO date string, decimals, null) and a page of ${PAGE_ORDERS} such orders`,
        'ours: defaultCodec.decode(defaultCodec.encode(v)) (msgpackr, 7-byte header with CRC-32, no compression)',
        "JSON: JSON.parse(Buffer.from(JSON.stringify(v), 'utf8').toString('utf8')): to UTF-8 bytes and back, as a store would",
        'each round trip is checked beforehand to give back a deep-equal value',
        'encoded sizes (mean over the objects; gzip and brotli with compressAbove: 0 and default levels 6 / 4):',
        row('JSON (UTF-8)', s.json, l.json),
        row('defaultCodec (msgpack)', s.msgpack, l.msgpack),
        row('codec + gzip', s.gzip, l.gzip),
        row('codec + brotli', s.brotli, l.brotli),
      ],
    },
    opts,
  )
}
