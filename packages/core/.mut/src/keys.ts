import { createHash } from 'node:crypto'
import { CacheError, describe } from './errors.js'

/**
 * One part of a cache key. Strings, numbers, bigints and booleans are written as text (so `42` and `'42'` name the
 * same key); `null`, arrays, plain objects and Dates are replaced by their `stableHash`.
 */
export type KeyPart = string | number | bigint | boolean | null | Date | readonly unknown[] | Record<string, unknown>

export interface KeyBuilderOptions {
  /**
   * Namespace in front of every key, taken verbatim so hierarchical namespaces such as `'app:cache'` stay readable.
   * It may not start or end with the separator.
   */
  prefix?: string
  /** Written as `v<version>` after the prefix; bump it (see `withVersion`) to make every existing key unreachable. */
  version?: string | number
  /** Joins the parts; 1-4 characters, no `%`, no ASCII letters or digits. Defaults to `':'`. */
  separator?: string
}

export interface KeyBuilder {
  readonly prefix: string | undefined
  readonly version: string | number | undefined
  readonly separator: string
  /** `<prefix>:v<version>:<entity>:<id>:<field>`; see `createKeyBuilder`. */
  key(entity: string, id?: KeyPart, field?: string): string
  /** `<entity>:<id>`, escaped like keys but without prefix or version. */
  tag(entity: string, id?: KeyPart): string
  /** The string every key of `entity` (or, without one, every key of this builder) starts with. */
  pattern(entity?: string): string
  /** The same builder with another version. */
  withVersion(version: string | number): KeyBuilder
}

const DEFAULT_SEPARATOR = ':'
const MAX_SEPARATOR_LENGTH = 4
// Escape sequences are built from '%', hex digits and 'u', and hashed parts start with HASH_MARKER. Banning those
// characters (letters and digits as a whole, which is easier to explain) from separators keeps escaped parts free of
// separator characters, so a key splits back into its parts in exactly one way.
const FORBIDDEN_IN_SEPARATOR = /[%0-9A-Za-z]/
// '%h' never occurs in an escaped string (every '%' there starts '%XX' or '%uXXXX'), so an id the caller controls can't
// be crafted to land on the key of a hashed object id.
const HASH_MARKER = '%h'
// Deep enough for any sane key object, shallow enough that recursion can't overflow the stack.
const MAX_DEPTH = 64
const HASH_LENGTH = 16

type Escaper = (part: string) => string

/**
 * Percent-encodes `%` and every character of `separator` in `part`, so parts joined with the separator can't be
 * mistaken for one another: `%` becomes `%25`, other code units `%XX` (below 256) or `%uXXXX`, in uppercase hex.
 *
 * @example
 * escapeKeyPart('a:b') // 'a%3Ab'
 * escapeKeyPart('100%') // '100%25'
 * escapeKeyPart('a/b', '/') // 'a%2Fb'
 */
export function escapeKeyPart(part: string, separator: string = DEFAULT_SEPARATOR): string {
  if (typeof part !== 'string') {
    throw new CacheError('E_INVALID_KEY', `a key part to escape must be a string (got ${describeValue(part)})`)
  }
  return escaperFor(separator)(part)
}

/**
 * The canonical text of a value, as hashed by `stableHash`: object keys are sorted (recursively), array order is kept,
 * properties that are `undefined` are left out, Dates are written by their ISO string, and every type is written
 * distinctly (`'1'`, `1`, `1n`, a Date and its ISO string all differ). Throws `E_INVALID_KEY` for functions, symbols,
 * non-finite numbers, invalid Dates, objects other than plain objects, arrays and Dates, circular references and
 * nesting deeper than 64 levels.
 *
 * @example
 * stableStringify({ b: [2, 1], a: '1' }) // '{"a":"1","b":[2,1]}'
 * stableStringify({ n: 1n, at: new Date(0) }) // '{"at":Date("1970-01-01T00:00:00.000Z"),"n":1n}'
 */
export function stableStringify(value: unknown): string {
  return serialize(value, new Set(), ['value'])
}

/**
 * A short, stable hash of a value: the first 16 characters of the base64url SHA-256 of `stableStringify(value)`.
 *
 * @example
 * stableHash({ page: 2, q: 'shoes' }) === stableHash({ q: 'shoes', page: 2 }) // true
 * stableHash({ page: 2, q: 'shoes' }).length // 16
 */
export function stableHash(value: unknown): string {
  return hashCanonical(serialize(value, new Set(), ['value']))
}

/**
 * Builds cache keys, tags and clear-patterns that follow `<prefix>:v<version>:<entity>:<id>:<field>`. Absent parts
 * are left out, except an absent id, which stays as an empty segment so the key can't be confused with one whose id
 * equals the field: `key('users')` is `'users:'` and `key('users', undefined, 'count')` is `'users::count'`.
 *
 * Entity, id and field are escaped with `escapeKeyPart`, so within one builder distinct parts always give distinct
 * keys, and no id or field can reach into another entity's keys. Builders sharing a store should use distinct
 * prefixes: the prefix is not escaped, and an unversioned builder's entity `'v2'` reads like a version.
 *
 * Throws `E_INVALID_OPTION` for a bad prefix, version or separator, and the builder's methods throw `E_INVALID_KEY`
 * for empty or unusable parts (see `stableStringify` for what an object id may hold).
 *
 * @example
 * const keys = createKeyBuilder({ prefix: 'app', version: 2 })
 * keys.key('users', 42, 'profile') // 'app:v2:users:42:profile'
 * keys.key('search', { q: 'shoes', page: 2 }) // 'app:v2:search:%h' + 16 hash characters
 * keys.tag('user', 42) // 'user:42'
 * keys.pattern('users') // 'app:v2:users:'
 * keys.withVersion(3).key('users', 42) // 'app:v3:users:42'
 */
export function createKeyBuilder(options: KeyBuilderOptions = {}): KeyBuilder {
  const separator = options.separator ?? DEFAULT_SEPARATOR
  validateSeparator(separator, 'separator')
  const { prefix, version } = options
  if (prefix !== undefined) validatePrefix(prefix, separator)
  if (version !== undefined) validateVersion(version, 'version')
  return buildKeyBuilder(prefix, version, separator)
}

function buildKeyBuilder(prefix: string | undefined, version: string | number | undefined, separator: string) {
  const escapePart = escaperFor(separator)
  let root = ''
  if (prefix !== undefined) root += prefix + separator
  if (version !== undefined) root += `v${escapePart(String(version))}${separator}`

  const builder: KeyBuilder = {
    prefix,
    version,
    separator,
    key(entity, id, field) {
      let out = root + renderName(entity, 'entity', escapePart) + separator
      if (id !== undefined) out += renderPart(id, escapePart)
      if (field !== undefined) out += separator + renderName(field, 'field', escapePart)
      return out
    },
    tag(entity, id) {
      const name = renderName(entity, 'entity', escapePart)
      return id === undefined ? name : name + separator + renderPart(id, escapePart)
    },
    pattern(entity) {
      return entity === undefined ? root : root + renderName(entity, 'entity', escapePart) + separator
    },
    withVersion(next) {
      validateVersion(next, 'withVersion(version)')
      return buildKeyBuilder(prefix, next, separator)
    },
  }
  return Object.freeze(builder)
}

function renderName(name: unknown, role: string, escapePart: Escaper): string {
  if (typeof name !== 'string' || name === '') {
    throw new CacheError('E_INVALID_KEY', `key ${role} must be a non-empty string (got ${describeValue(name)})`)
  }
  return escapePart(name)
}

function renderPart(id: unknown, escapePart: Escaper): string {
  switch (typeof id) {
    case 'string':
      if (id === '') throw new CacheError('E_INVALID_KEY', 'key id must not be an empty string')
      return escapePart(id)
    case 'number':
      if (!Number.isFinite(id)) throw new CacheError('E_INVALID_KEY', `key id must be a finite number (got ${id})`)
      // Escaped too: '-', '.' and '+' may be separator characters.
      return escapePart(String(id))
    case 'bigint':
      return escapePart(String(id))
    case 'boolean':
      return id ? 'true' : 'false'
    case 'object':
      return HASH_MARKER + escapePart(hashCanonical(serialize(id, new Set(), ['id'])))
    default:
      throw new CacheError('E_INVALID_KEY', `key id can't be ${describeValue(id)}`)
  }
}

function hashCanonical(canonical: string): string {
  // 16 base64url characters keep 96 bits. By the birthday bound, n distinct values collide with probability about
  // n² / 2^97: roughly 1 in 10^11 for a billion values, far below the odds of a store losing data.
  return createHash('sha256').update(canonical, 'utf8').digest('base64url').slice(0, HASH_LENGTH)
}

// Strings and object keys go through JSON.stringify, which also writes lone surrogates as \uXXXX escapes; otherwise
// UTF-8 encoding would turn them all into U+FFFD and make different strings hash alike.
function serialize(value: unknown, ancestors: Set<object>, path: string[]): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      if (!Number.isFinite(value)) throw invalidPart(path, `is ${value}; numbers in keys must be finite`)
      return String(value)
    case 'bigint':
      return `${value}n`
    case 'boolean':
      return value ? 'true' : 'false'
    case 'undefined':
      // Only reachable at the top level or inside arrays, where it must differ from null (JSON would merge them).
      return 'undefined'
    case 'object':
      break
    default:
      throw invalidPart(path, `is ${describeValue(value)}, which can't be part of a key`)
  }
  if (value === null) return 'null'
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw invalidPart(path, 'is an invalid Date')
    return `Date(${JSON.stringify(value.toISOString())})`
  }
  if (ancestors.has(value)) throw invalidPart(path, 'is a circular reference')
  if (ancestors.size >= MAX_DEPTH) throw invalidPart(path, `is nested deeper than ${MAX_DEPTH} levels`)

  ancestors.add(value)
  let out: string
  if (Array.isArray(value)) {
    out = '['
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ','
      path.push(`[${i}]`)
      out += serialize(value[i], ancestors, path)
      path.pop()
    }
    out += ']'
  } else {
    const proto: unknown = Object.getPrototypeOf(value)
    // Objects whose prototype's prototype is null are plain in any realm; Maps, Sets and class instances would
    // serialise as their enumerable properties only, so every Map would land on the same key.
    if (proto !== null && Object.getPrototypeOf(proto) !== null) {
      const name = (value as { constructor?: { name?: unknown } }).constructor?.name
      throw invalidPart(
        path,
        `is ${typeof name === 'string' && name !== '' ? `a ${name}` : 'not a plain object'}; use a plain object, array or Date`,
      )
    }
    const record = value as Record<string, unknown>
    out = '{'
    let first = true
    // The default sort compares UTF-16 code units, which is locale-independent.
    for (const name of Object.keys(record).sort()) {
      const item = record[name]
      if (item === undefined) continue
      if (!first) out += ','
      first = false
      path.push(IDENTIFIER.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`)
      out += `${JSON.stringify(name)}:${serialize(item, ancestors, path)}`
      path.pop()
    }
    out += '}'
  }
  ancestors.delete(value)
  return out
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/

function invalidPart(path: readonly string[], problem: string): CacheError {
  return new CacheError('E_INVALID_KEY', `key part ${path.join('')} ${problem}`)
}

// `describe` prints a function's whole source; a short label is enough to find the mistake.
function describeValue(value: unknown): string {
  return typeof value === 'function' ? 'a function' : describe(value)
}

function validateSeparator(separator: unknown, option: string): asserts separator is string {
  if (
    typeof separator !== 'string' ||
    separator.length === 0 ||
    separator.length > MAX_SEPARATOR_LENGTH ||
    FORBIDDEN_IN_SEPARATOR.test(separator)
  ) {
    throw new CacheError(
      'E_INVALID_OPTION',
      `${option} must be 1-${MAX_SEPARATOR_LENGTH} characters without '%', letters or digits (got ${describeValue(separator)})`,
    )
  }
}

function validatePrefix(prefix: unknown, separator: string): void {
  if (typeof prefix !== 'string' || prefix === '') {
    throw new CacheError('E_INVALID_OPTION', `prefix must be a non-empty string (got ${describeValue(prefix)})`)
  }
  if (prefix.startsWith(separator) || prefix.endsWith(separator)) {
    throw new CacheError(
      'E_INVALID_OPTION',
      `prefix must not start or end with the separator '${separator}' (got ${describeValue(prefix)})`,
    )
  }
}

function validateVersion(version: unknown, option: string): void {
  if (typeof version === 'string' ? version !== '' : typeof version === 'number' && Number.isFinite(version)) return
  throw new CacheError(
    'E_INVALID_OPTION',
    `${option} must be a non-empty string or a finite number (got ${describeValue(version)})`,
  )
}

const escapers = new Map<string, Escaper>()
// Builders hold on to their own escaper; the cache only saves escapeKeyPart from rebuilding regexes per call.
const MAX_CACHED_ESCAPERS = 16

function escaperFor(separator: string): Escaper {
  let escaper = escapers.get(separator)
  if (escaper === undefined) {
    validateSeparator(separator, 'separator')
    escaper = makeEscaper(separator)
    if (escapers.size < MAX_CACHED_ESCAPERS) escapers.set(separator, escaper)
  }
  return escaper
}

function makeEscaper(separator: string): Escaper {
  // Every code unit as \uXXXX: no character-class metacharacter ('^', '-', ']', '\') needs special handling, and
  // without the 'u' flag each half of a surrogate pair is matched (and encoded) on its own.
  let units = '\\u0025'
  for (let i = 0; i < separator.length; i++) units += `\\u${separator.charCodeAt(i).toString(16).padStart(4, '0')}`
  const needsEscape = new RegExp(`[${units}]`)
  const escapeAll = new RegExp(`[${units}]`, 'g')
  // Most parts need no escaping; one test avoids allocating a new string for them.
  return (part) => (needsEscape.test(part) ? part.replace(escapeAll, encodeCodeUnit) : part)
}

function encodeCodeUnit(char: string): string {
  const code = char.charCodeAt(0)
  const hex = code.toString(16).toUpperCase()
  return code < 256 ? `%${hex.padStart(2, '0')}` : `%u${hex.padStart(4, '0')}`
}
