import { describe, expect, it } from 'vitest'
import { TodoRepository } from '../src/repository.js'

describe('TodoRepository', () => {
  it('keeps one list per user, in creation order, and updates in place', async () => {
    const repo = new TodoRepository({ latencyMs: 0 })
    const a = await repo.create('u1', 'first')
    const b = await repo.create('u1', 'second')
    await repo.create('u2', 'other user')
    const updated = await repo.update('u1', a.id, { done: true })
    expect(updated).toMatchObject({ id: a.id, title: 'first', done: true })
    expect((await repo.list('u1')).map((todo) => [todo.title, todo.done])).toEqual([
      ['first', true],
      ['second', false],
    ])
    expect(await repo.delete('u1', b.id)).toBe(true)
    expect(await repo.delete('u1', b.id)).toBe(false)
    expect(await repo.update('u2', a.id, { done: true })).toBeUndefined()
    expect(await repo.list('nobody')).toEqual([])
    expect(repo.stats()).toEqual({ reads: 2, writes: 7 })
  })

  it('hands out frozen lists that later writes do not change', async () => {
    const repo = new TodoRepository({ latencyMs: 0 })
    const todo = await repo.create('u', 'x')
    const before = await repo.list('u')
    await repo.update('u', todo.id, { title: 'y' })
    expect(Object.isFrozen(before)).toBe(true)
    expect(Object.isFrozen(before[0])).toBe(true)
    expect(before[0]!.title).toBe('x')
  })

  it('honours an AbortSignal: a read stops at once, a write is not applied if aborted before it commits', async () => {
    const repo = new TodoRepository({ latencyMs: 1000 })
    const controller = new AbortController()
    const reading = repo.list('u', { signal: controller.signal })
    const writing = repo.create('u', 'never', { signal: controller.signal })
    controller.abort()
    await expect(reading).rejects.toMatchObject({ name: 'AbortError' })
    await expect(writing).rejects.toMatchObject({ name: 'AbortError' })
    await expect(repo.create('u', 'x', { signal: AbortSignal.abort() })).rejects.toThrow()
    expect(repo.stats()).toEqual({ reads: 0, writes: 0 })
  })

  it('refuses a nonsensical latency', () => {
    expect(() => new TodoRepository({ latencyMs: -1 })).toThrow(RangeError)
    expect(() => new TodoRepository({ latencyMs: { min: 10, max: 5 } })).toThrow(RangeError)
  })
})
