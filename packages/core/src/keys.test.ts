import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createKeyBuilder, escapeKeyPart, type KeyPart, stableHash, stableStringify } from './keys.js'
import { expectCode, random } from './test-helpers.js'

// Reverses escapeKeyPart independently of the implementation, to prove no information is lost.
function decodePart(part: string): string {
  return part.replace(/%u([0-9A-F]{4})|%([0-9A-F]{2})/g, (_, wide: string | undefined, narrow: string | undefined) =>
    String.fromCharCode(Number.parseInt(wide ?? narrow ?? '', 16)),
  )
}

describe('createKeyBuilder: key convention', () => {
  it('follows <prefix>:v<version>:<entity>:<id>:<field>', () => {
    const keys = createKeyBuilder({ prefix: 'app', version: 2 })
    expect(keys.key('users', 42, 'profile')).toBe('app:v2:users:42:profile')
    expect(keys.key('users', 'ada')).toBe('app:v2:users:ada')
  })

  it('leaves out prefix and version when they are not configured', () => {
    expect(createKeyBuilder().key('user', 42, 'profile')).toBe('user:42:profile')
    expect(createKeyBuilder({ prefix: 'app' }).key('user', 42)).toBe('app:user:42')
    expect(createKeyBuilder({ version: 'beta' }).key('user', 42)).toBe('vbeta:user:42')
  })

  it('keeps an absent id as an empty segment so it cannot be confused with an id', () => {
    const keys = createKeyBuilder({ prefix: 'app' })
    expect(keys.key('users')).toBe('app:users:')
    expect(keys.key('users', undefined, 'count')).toBe('app:users::count')
    expect(keys.key('users', undefined, 'count')).not.toBe(keys.key('users', 'count'))
  })

  it('writes scalar ids as text', () => {
    const keys = createKeyBuilder()
    expect(keys.key('n', 42)).toBe('n:42')
    expect(keys.key('n', 42)).toBe(keys.key('n', '42'))
    expect(keys.key('n', -1.5)).toBe('n:-1.5')
    expect(keys.key('n', -0)).toBe('n:0')
    expect(keys.key('n', 12345678901234567890n)).toBe('n:12345678901234567890')
    expect(keys.key('n', true)).toBe('n:true')
    expect(keys.key('n', false)).toBe('n:false')
  })

  it('hashes null, arrays, plain objects and Dates behind a %h marker', () => {
    const keys = createKeyBuilder({ prefix: 'app' })
    const params = { q: 'shoes', page: 2 }
    expect(keys.key('search', params)).toBe(`app:search:%h${stableHash(params)}`)
    expect(keys.key('search', [1, 2])).toBe(`app:search:%h${stableHash([1, 2])}`)
    expect(keys.key('search', null)).toBe(`app:search:%h${stableHash(null)}`)
    expect(keys.key('day', new Date(0))).toBe(`app:day:%h${stableHash(new Date(0))}`)
  })

  it('joins with a custom separator and escapes it', () => {
    const slash = createKeyBuilder({ prefix: 'app', version: 1, separator: '/' })
    expect(slash.key('users', 'a/b', 'x')).toBe('app/v1/users/a%2Fb/x')
    const double = createKeyBuilder({ separator: '::' })
    expect(double.key('users', 'a:b')).toBe('users::a%3Ab')
    const dot = createKeyBuilder({ separator: '.' })
    expect(dot.key('price', 1.5)).toBe('price.1%2E5')
  })

  it('exposes its configuration and is immutable', () => {
    const keys = createKeyBuilder({ prefix: 'app', version: 3, separator: '|' })
    expect([keys.prefix, keys.version, keys.separator]).toEqual(['app', 3, '|'])
    expect(createKeyBuilder().separator).toBe(':')
    expect(Object.isFrozen(keys)).toBe(true)
  })
})

describe('createKeyBuilder: tags and patterns', () => {
  it('builds tags without prefix or version, escaped like keys', () => {
    const keys = createKeyBuilder({ prefix: 'app', version: 2 })
    expect(keys.tag('user', 42)).toBe('user:42')
    expect(keys.tag('user')).toBe('user')
    expect(keys.tag('user', 'a:b')).toBe('user:a%3Ab')
    expect(keys.tag('user', 'a:b')).not.toBe(keys.tag('user:a', 'b'))
    expect(keys.tag('search', { q: 'x' })).toBe(`search:%h${stableHash({ q: 'x' })}`)
  })

  it('returns the prefix shared by every key of an entity, or of the whole builder', () => {
    const keys = createKeyBuilder({ prefix: 'app', version: 2 })
    expect(keys.pattern('users')).toBe('app:v2:users:')
    expect(keys.pattern()).toBe('app:v2:')
    expect(createKeyBuilder().pattern()).toBe('')
    expect(createKeyBuilder({ prefix: 'app' }).pattern('a:b')).toBe('app:a%3Ab:')
    for (const key of [keys.key('users'), keys.key('users', 1), keys.key('users', 1, 'f'), keys.key('users', [1])]) {
      expect(key.startsWith(keys.pattern('users'))).toBe(true)
      expect(key.startsWith(keys.pattern())).toBe(true)
    }
  })

  it("keeps other entities' keys out of an entity's pattern", () => {
    const keys = createKeyBuilder({ prefix: 'app' })
    const pattern = keys.pattern('user')
    expect(keys.key('users', 1).startsWith(pattern)).toBe(false)
    expect(keys.key('user:1', 'x').startsWith(pattern)).toBe(false)
    expect(keys.key('user%', 'x').startsWith(pattern)).toBe(false)
  })
})

describe('createKeyBuilder: versions', () => {
  it('writes the version as v<version> and escapes it', () => {
    expect(createKeyBuilder({ version: 7 }).key('a', 1)).toBe('v7:a:1')
    expect(createKeyBuilder({ version: '2024-01' }).key('a', 1)).toBe('v2024-01:a:1')
    expect(createKeyBuilder({ version: '1:2' }).key('a', 1)).toBe('v1%3A2:a:1')
  })

  it('withVersion returns a new builder whose keys differ from every old key', () => {
    const v1 = createKeyBuilder({ prefix: 'app', version: 1, separator: '/' })
    const v2 = v1.withVersion(2)
    expect(v2.key('users', 42)).toBe('app/v2/users/42')
    expect(v2.pattern()).toBe('app/v2/')
    expect(v1.key('users', 42)).toBe('app/v1/users/42')
    expect(v2.version).toBe(2)
    expect(v1.version).toBe(1)
    expect(v1.key('users', 42).startsWith(v2.pattern())).toBe(false)
  })

  it('withVersion adds a version to an unversioned builder', () => {
    const keys = createKeyBuilder({ prefix: 'app' }).withVersion('next')
    expect(keys.key('users', 1)).toBe('app:vnext:users:1')
  })
})

describe('escapeKeyPart', () => {
  it('returns parts without % or separator characters unchanged', () => {
    expect(escapeKeyPart('plain-text_42 é→😀')).toBe('plain-text_42 é→😀')
    expect(escapeKeyPart('a:b', '/')).toBe('a:b')
  })

  it('encodes % and each separator character as uppercase hex', () => {
    expect(escapeKeyPart('100%')).toBe('100%25')
    expect(escapeKeyPart('a:b')).toBe('a%3Ab')
    expect(escapeKeyPart('%3A:')).toBe('%253A%3A')
    expect(escapeKeyPart('a|b', '|')).toBe('a%7Cb')
    expect(escapeKeyPart('a:|b', ':|')).toBe('a%3A%7Cb')
    expect(escapeKeyPart('x\u00ffy', '\u00ff')).toBe('x%FFy')
  })

  it('uses %uXXXX for code units of 256 and above, one per UTF-16 code unit', () => {
    expect(escapeKeyPart('a→b', '→')).toBe('a%u2192b')
    expect(escapeKeyPart('a😀b', '😀')).toBe('a%uD83D%uDE00b')
  })

  it('round-trips through a decoder', () => {
    const parts = ['%', '%25', ':%3A:', '%u2192', 'a→b', '😀:😀']
    for (const separator of [':', '→', '😀', '-_']) {
      for (const part of parts) expect(decodePart(escapeKeyPart(part, separator))).toBe(part)
    }
  })
})

describe('stableStringify and stableHash', () => {
  it('ignores object key order, recursively', () => {
    const a = { b: 1, a: { y: [1, { q: 1, p: 2 }], x: 'x' } }
    const b = { a: { x: 'x', y: [1, { p: 2, q: 1 }] }, b: 1 }
    expect(stableStringify(a)).toBe(stableStringify(b))
    expect(stableStringify(a)).toBe('{"a":{"x":"x","y":[1,{"p":2,"q":1}]},"b":1}')
    expect(stableHash(a)).toBe(stableHash(b))
    expect(createKeyBuilder().key('s', a)).toBe(createKeyBuilder().key('s', b))
  })

  it('keeps array order', () => {
    expect(stableStringify([1, 2])).not.toBe(stableStringify([2, 1]))
    expect(stableHash({ ids: [1, 2] })).not.toBe(stableHash({ ids: [2, 1] }))
  })

  it('writes each type distinctly', () => {
    const values: unknown[] = [
      '1',
      1,
      1n,
      'true',
      true,
      'null',
      null,
      undefined,
      [],
      {},
      [1],
      { 0: 1 },
      ['1'],
      [null],
      [undefined],
      '2020-01-01T00:00:00.000Z',
      new Date('2020-01-01T00:00:00.000Z'),
      '[1]',
      '{}',
    ]
    const serialised = values.map(stableStringify)
    expect(new Set(serialised).size).toBe(values.length)
    expect(new Set(values.map(stableHash)).size).toBe(values.length)
  })

  it('writes Dates by their ISO string', () => {
    expect(stableStringify(new Date(0))).toBe('Date("1970-01-01T00:00:00.000Z")')
    expect(stableHash({ at: new Date(5) })).toBe(stableHash({ at: new Date(5) }))
    expect(stableHash({ at: new Date(5) })).not.toBe(stableHash({ at: new Date(6) }))
  })

  it('leaves out undefined object properties, like JSON', () => {
    expect(stableStringify({ a: 1, b: undefined })).toBe(stableStringify({ a: 1 }))
    expect(stableHash({ a: 1, b: undefined })).toBe(stableHash({ a: 1 }))
  })

  it('accepts objects without a prototype and repeated (non-circular) references', () => {
    const shared = { x: 1 }
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1 })
    expect(stableStringify(bare)).toBe('{"a":1}')
    expect(stableStringify({ p: shared, q: shared })).toBe('{"p":{"x":1},"q":{"x":1}}')
  })

  it('keeps strings that differ only in lone surrogates apart', () => {
    expect(stableHash('\ud800')).not.toBe(stableHash('\ud801'))
  })

  it('hashes with the first 16 base64url characters of SHA-256 over the canonical text', () => {
    const value = { q: 'shoes', page: 2 }
    const expected = createHash('sha256').update(stableStringify(value)).digest('base64url').slice(0, 16)
    expect(stableHash(value)).toBe(expected)
    expect(stableHash(value)).toMatch(/^[A-Za-z0-9_-]{16}$/)
  })
})

describe('collision resistance', () => {
  const colon = createKeyBuilder({ prefix: 'app' })
  const double = createKeyBuilder({ separator: '::' })
  const dash = createKeyBuilder({ separator: '-' })
  const dot = createKeyBuilder({ separator: '.' })
  const params = { q: 'x' }

  const pairs: [string, () => string, () => string][] = [
    ['separator in id vs in entity', () => colon.key('a', 'b:c'), () => colon.key('a:b', 'c')],
    ['separator in id vs a field', () => colon.key('a', 'b:c'), () => colon.key('a', 'b', 'c')],
    ['separator in field vs in id', () => colon.key('a', 'b', 'c:d'), () => colon.key('a', 'b:c', 'd')],
    ['escaped-looking id vs raw separator', () => colon.key('a', 'b%3Ac'), () => colon.key('a', 'b:c')],
    ['percent vs its escape', () => colon.key('a', '%'), () => colon.key('a', '%25')],
    ['%u-looking id vs wide char', () => colon.key('a', '%u2192'), () => colon.key('a', '→')],
    ['absent id with field vs id', () => colon.key('a', undefined, 'b'), () => colon.key('a', 'b')],
    ['bare entity vs entity ending in separator', () => colon.key('a'), () => colon.key('a:')],
    ['hashed object vs its hash as a string', () => colon.key('s', params), () => colon.key('s', stableHash(params))],
    [
      'hashed object vs marker-like string',
      () => colon.key('s', params),
      () => colon.key('s', `%h${stableHash(params)}`),
    ],
    ['array vs its elements as text', () => colon.key('s', ['1', '2']), () => colon.key('s', '1,2')],
    ['null vs the string null', () => colon.key('s', null), () => colon.key('s', 'null')],
    ['multi-char separator split', () => double.key('a', 'b:', 'c'), () => double.key('a', 'b', ':c')],
    ['multi-char separator inside id', () => double.key('a', 'b::c'), () => double.key('a', 'b', 'c')],
    ['negative number vs dash separator', () => dash.key('a', -1), () => dash.key('a-', 1)],
    ['decimal vs dot separator field', () => dot.key('p', 1.5), () => dot.key('p', 1, '5')],
    ['tag with separator in id', () => colon.tag('a', 'b:c'), () => colon.tag('a:b', 'c')],
    [
      'versions',
      () => createKeyBuilder({ version: 1 }).key('a', 1),
      () => createKeyBuilder({ version: 2 }).key('a', 1),
    ],
    [
      'version with separator vs entity',
      () => createKeyBuilder({ version: '1:a' }).key('b', 1),
      () => createKeyBuilder({ version: 1 }).key('a', 'b:1'),
    ],
  ]

  it.each(pairs)('%s', (_, first, second) => {
    expect(first()).not.toBe(second())
  })

  // Atoms chosen to stress escaping: separator characters, '%', things that look like escapes, wide characters.
  const atoms = ['a', 'b', ':', '::', '/', '-', '|', '.', '%', '%3A', '%25', '3A', 'u', '%u', '→', '😀', '\ud83d', ' ']

  function randomPart(next: () => number): string {
    let part = ''
    const length = 1 + Math.floor(next() * 4)
    for (let i = 0; i < length; i++) part += atoms[Math.floor(next() * atoms.length)]
    return part
  }

  it.each([':', '::', '/', '-', '|', '.', '→', '😀', ':/'])(
    'distinct part tuples give distinct, decodable keys with separator %j',
    (separator) => {
      let seed = 0x5eed
      for (let i = 0; i < separator.length; i++) seed = seed * 31 + separator.charCodeAt(i)
      const next = random(seed)
      const keys = createKeyBuilder({ prefix: 'app', version: 1, separator })
      const root = keys.pattern()
      const seen = new Map<string, string>()
      const entities = new Set<string>()
      // Collected and asserted once: an expect() per generated key would dominate the run time.
      const problems: string[] = []

      for (let i = 0; i < 3000; i++) {
        const entity = randomPart(next)
        const id = next() < 0.2 ? undefined : randomPart(next)
        const field = next() < 0.5 ? undefined : randomPart(next)
        const key = keys.key(entity, id, field)
        const tuple = JSON.stringify([entity, id ?? null, field ?? null])
        const previous = seen.get(key)
        if (previous !== undefined && previous !== tuple) problems.push(`${previous} and ${tuple} share ${key}`)
        seen.set(key, tuple)
        entities.add(entity)

        // The key decodes back to exactly its parts, so no other tuple can produce it.
        const decoded = JSON.stringify(key.slice(root.length).split(separator).map(decodePart))
        const parts = JSON.stringify(field === undefined ? [entity, id ?? ''] : [entity, id ?? '', field])
        if (decoded !== parts) problems.push(`${key} decodes to ${decoded}, not ${parts}`)
        if (!key.startsWith(keys.pattern(entity))) problems.push(`${key} is outside pattern(${JSON.stringify(entity)})`)
      }

      // No key is reachable through another entity's pattern (so clear(pattern) only clears that entity).
      const patterns = [...entities].map((entity) => [entity, keys.pattern(entity)] as const)
      let checked = 0
      for (const [key, tuple] of seen) {
        const [owner] = JSON.parse(tuple) as [string]
        for (const [entity, pattern] of patterns) {
          if (entity === owner) continue
          if (key.startsWith(pattern)) problems.push(`${key} of ${owner} matches pattern ${pattern}`)
          checked++
        }
      }
      expect(problems).toEqual([])
      expect(seen.size).toBeGreaterThan(2500)
      expect(checked).toBeGreaterThan(0)
    },
  )

  it('distinct object ids give distinct keys', () => {
    const next = random(42)
    const keys = createKeyBuilder()
    const seen = new Map<string, string>()
    const collisions: string[] = []
    for (let i = 0; i < 2000; i++) {
      const value: KeyPart = {
        a: Math.floor(next() * 50),
        b: atoms[Math.floor(next() * atoms.length)] ?? '',
        c: [next() < 0.5],
      }
      const key = keys.key('q', value)
      const canonical = JSON.stringify([value.a, value.b, value.c])
      const previous = seen.get(key)
      if (previous !== undefined && previous !== canonical) collisions.push(`${previous} and ${canonical}`)
      seen.set(key, canonical)
    }
    expect(collisions).toEqual([])
    expect(seen.size).toBeGreaterThan(1000)
  })
})

describe('errors', () => {
  const keys = createKeyBuilder({ prefix: 'app' })

  it('rejects empty or non-string entities and fields', () => {
    expectCode(() => keys.key(''), 'E_INVALID_KEY', /entity/)
    expectCode(() => keys.key(42 as unknown as string), 'E_INVALID_KEY', /entity/)
    expectCode(() => keys.tag(''), 'E_INVALID_KEY', /entity/)
    expectCode(() => keys.pattern(''), 'E_INVALID_KEY', /entity/)
    expectCode(() => keys.key('users', 1, ''), 'E_INVALID_KEY', /field/)
  })

  it('rejects empty string ids and non-finite numbers', () => {
    expectCode(() => keys.key('users', ''), 'E_INVALID_KEY', /empty/)
    expectCode(() => keys.tag('users', ''), 'E_INVALID_KEY', /empty/)
    expectCode(() => keys.key('users', Number.NaN), 'E_INVALID_KEY', /finite/)
    expectCode(() => keys.key('users', { page: Number.POSITIVE_INFINITY }), 'E_INVALID_KEY', /id\.page/)
  })

  it('rejects functions and symbols, top-level and nested, naming where they are', () => {
    const fn = () => 1
    expectCode(() => keys.key('users', fn as unknown as KeyPart), 'E_INVALID_KEY', /a function/)
    expectCode(() => keys.key('users', Symbol('s') as unknown as KeyPart), 'E_INVALID_KEY', /symbol/)
    expectCode(() => keys.key('users', { filter: { by: fn } }), 'E_INVALID_KEY', /id\.filter\.by is a function/)
    expectCode(() => keys.key('users', [1, Symbol('s')]), 'E_INVALID_KEY', /id\[1\] is symbol/)
    expectCode(() => stableStringify({ 'a b': fn }), 'E_INVALID_KEY', /value\["a b"\]/)
    expectCode(() => stableHash(Symbol('s')), 'E_INVALID_KEY')
  })

  it('rejects circular references instead of overflowing the stack', () => {
    const object: Record<string, unknown> = { a: 1 }
    object.self = { back: object }
    const array: unknown[] = [1]
    array.push(array)
    expectCode(() => keys.key('users', object), 'E_INVALID_KEY', /id\.self\.back is a circular reference/)
    expectCode(() => keys.key('users', array), 'E_INVALID_KEY', /circular/)
    expectCode(() => stableHash(object), 'E_INVALID_KEY', /circular/)
  })

  it('rejects nesting too deep to hash safely', () => {
    let deep: Record<string, unknown> = {}
    for (let i = 0; i < 10_000; i++) deep = { deep }
    expectCode(() => stableHash(deep), 'E_INVALID_KEY', /nested deeper/)
  })

  it('rejects objects that would lose their contents and invalid Dates', () => {
    expectCode(() => keys.key('users', new Map([[1, 2]]) as unknown as KeyPart), 'E_INVALID_KEY', /a Map/)
    expectCode(() => stableHash({ s: new Set([1]) }), 'E_INVALID_KEY', /value\.s is a Set/)
    expectCode(() => stableHash(new Date(Number.NaN)), 'E_INVALID_KEY', /invalid Date/)
  })

  it('rejects bad separators', () => {
    for (const separator of ['', '%', 'a%', '12345', 'x', '1', ':a', 42 as unknown as string]) {
      expectCode(() => createKeyBuilder({ separator }), 'E_INVALID_OPTION', /separator/)
    }
    expectCode(() => escapeKeyPart('a', '%'), 'E_INVALID_OPTION', /separator/)
    expectCode(() => escapeKeyPart(1 as unknown as string), 'E_INVALID_KEY')
  })

  it('rejects bad prefixes and versions, naming the option', () => {
    expectCode(() => createKeyBuilder({ prefix: '' }), 'E_INVALID_OPTION', /prefix/)
    expectCode(() => createKeyBuilder({ prefix: 'app:' }), 'E_INVALID_OPTION', /prefix/)
    expectCode(() => createKeyBuilder({ prefix: '/app', separator: '/' }), 'E_INVALID_OPTION', /prefix/)
    expectCode(() => createKeyBuilder({ prefix: 1 as unknown as string }), 'E_INVALID_OPTION', /prefix/)
    expectCode(() => createKeyBuilder({ version: '' }), 'E_INVALID_OPTION', /version/)
    expectCode(() => createKeyBuilder({ version: Number.NaN }), 'E_INVALID_OPTION', /version/)
    expectCode(() => createKeyBuilder({ version: true as unknown as number }), 'E_INVALID_OPTION', /version/)
    expectCode(() => keys.withVersion(''), 'E_INVALID_OPTION', /withVersion/)
  })

  it('accepts a prefix containing the separator in the middle, verbatim', () => {
    expect(createKeyBuilder({ prefix: 'app:cache' }).key('a', 1)).toBe('app:cache:a:1')
  })
})
