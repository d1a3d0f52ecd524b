import type { Cache } from '@cache/core'
import fastifyCache from '@cache/fastify'
import Fastify, { type FastifyInstance } from 'fastify'

export interface Book {
  id: number
  title: string
  author: string
}

/** An in-memory catalogue that is slow on purpose, like a database: the cache saves these reads on a hit. */
export class Catalogue {
  private readonly books = new Map<number, Book>()
  private lastId = 0
  /** Reads that reached the catalogue; a cache hit adds nothing here. */
  reads = 0

  constructor() {
    this.add({ title: 'The Mythical Man-Month', author: 'Frederick P. Brooks' })
    this.add({ title: 'A Philosophy of Software Design', author: 'John Ousterhout' })
  }

  async all(): Promise<Book[]> {
    await this.latency()
    return [...this.books.values()]
  }

  async one(id: number): Promise<Book | undefined> {
    await this.latency()
    return this.books.get(id)
  }

  add(fields: Omit<Book, 'id'>): Book {
    const book = { id: ++this.lastId, ...fields }
    this.books.set(book.id, book)
    return book
  }

  private latency(): Promise<void> {
    this.reads++
    return new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const newBook = {
  type: 'object',
  required: ['title', 'author'],
  additionalProperties: false,
  properties: {
    title: { type: 'string', minLength: 1, maxLength: 200 },
    author: { type: 'string', minLength: 1, maxLength: 200 },
  },
} as const

/**
 * The books API, its reads cached by `@cache/fastify`:
 *
 * - `GET  /books`      every book: cached 30 s (then served stale for up to a minute while one request refreshes it)
 * - `GET  /books/:id`  one book, or a 404 (cached too: HTTP allows it)
 * - `POST /books`      `{ "title", "author" }` -> 201; drops the stored `/books` and everything tagged `books`
 * - `GET  /stats`      the cache's counters and the catalogue's reads (not cached)
 *
 * Cached answers carry `Cache-Status` (RFC 9211): `cache; fwd=miss; stored; ttl=30` first, then `cache; hit; ttl=…`.
 *
 * @example
 * const app = await buildApp(createCache())
 * await app.listen({ port: 3000 })
 */
export async function buildApp(cache: Cache, catalogue = new Catalogue()): Promise<FastifyInstance> {
  const app = Fastify({ logger: process.env.LOG === '1' })
  // The registered options are the defaults of every route that says `cache: true`.
  await app.register(fastifyCache, {
    cache,
    ttl: '30s',
    staleWhileRevalidate: '1m',
    tags: () => ['books'],
  })

  app.get('/books', { config: { cache: true } }, () => catalogue.all())

  app.get<{ Params: { id: string } }>('/books/:id', { config: { cache: true } }, async (request, reply) => {
    const book = await catalogue.one(Number(request.params.id))
    return book ?? reply.code(404).send({ error: 'no such book' })
  })

  // A write through a cached route drops the stored answers of its URL; `invalidateTags` drops the list's tag too,
  // so the next GET /books and GET /books/:id reach the catalogue.
  app.post<{ Body: Omit<Book, 'id'> }>(
    '/books',
    { schema: { body: newBook }, config: { cache: { invalidateTags: () => ['books'] } } },
    async (request, reply) => {
      const book = catalogue.add(request.body)
      return reply.code(201).header('location', `/books/${book.id}`).send(book)
    },
  )

  app.get('/stats', () => ({ cache: cache.stats(), catalogueReads: catalogue.reads }))

  return app
}
