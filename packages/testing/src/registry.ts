import type { ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'

/** Anything this package started that `stopAll()` must stop: servers, clusters, proxies. */
export interface Stoppable {
  stop(): Promise<void>
}

interface Registry {
  /** Every child process still alive (removed on its 'exit'). */
  readonly children: Set<ChildProcess>
  /** Every temp dir still on disk. */
  readonly dirs: Set<string>
  readonly handles: Set<Stoppable>
}

// One registry per process, even when a test runner loads this module more than once (vitest isolates modules
// per test file): the hooks below are installed once and see everything.
const KEY: unique symbol = Symbol.for('@cache/testing/registry')
type Holder = typeof globalThis & { [KEY]?: Registry }

export function registry(): Registry {
  const holder = globalThis as Holder
  let reg = holder[KEY]
  if (!reg) {
    reg = { children: new Set(), dirs: new Set(), handles: new Set() }
    holder[KEY] = reg
    installHooks(reg)
  }
  return reg
}

/** Synchronous last resort: SIGKILL every child still alive and remove every temp dir. */
function killLeftovers(reg: Registry): void {
  for (const child of reg.children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  reg.children.clear()
  for (const dir of reg.dirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {
      // best effort
    }
  }
  reg.dirs.clear()
}

function installHooks(reg: Registry): void {
  process.on('exit', () => killLeftovers(reg))
  // A test worker whose runner died (its IPC channel closed) may run on for a while: its servers go right away.
  if (process.send) process.once('disconnect', () => killLeftovers(reg))
  // Test runners end their workers with SIGTERM (vitest does), which skips 'exit' handlers: clean up there too,
  // then, when nobody else listens for the signal, re-raise it so the process still ends the default way.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killLeftovers(reg)
      if (process.listenerCount(sig) === 1) {
        process.off(sig, onSignal)
        process.kill(process.pid, sig)
      }
    }
    process.on(sig, onSignal)
  }
}

/**
 * Stops everything this package started in this process and has not stopped yet: servers (SIGTERM, temp dirs
 * removed), clusters and fault proxies. Call it in a global `afterAll` if a test may forget; an exit hook SIGKILLs
 * whatever is still left when the process ends anyway.
 */
export async function stopAll(): Promise<void> {
  const reg = registry()
  const handles = [...reg.handles]
  const results = await Promise.allSettled(handles.map((h) => h.stop()))
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed.length > 0) {
    throw new AggregateError(
      failed.map((f) => f.reason),
      `stopAll: ${failed.length} of ${handles.length} could not be stopped`,
    )
  }
}
