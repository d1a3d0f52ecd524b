import { accessSync, constants, statSync } from 'node:fs'
import { delimiter, isAbsolute, join } from 'node:path'

export const INSTALL_HINT =
  'Install the binaries with `apt-get install -y redis-server memcached` (Debian/Ubuntu; redis-cli comes with ' +
  'redis-server; macOS: `brew install redis memcached`)'

export interface BinaryOptions {
  /** Path of the server binary to run instead of looking it up on PATH. */
  binary?: string
  /** Search path used instead of `process.env.PATH` to find the binaries. */
  PATH?: string
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The absolute path of `name`: `explicit` when given, else the first executable `name` on the search path.
 * Throws an Error that says how to get it; `envVar` names the variable that points tests at an external server.
 */
export function findBinary(
  name: string,
  options: { explicit?: string | undefined; PATH?: string | undefined },
  envVar: 'REDIS_URL' | 'MEMCACHED_URL',
): string {
  const alternative =
    `or, for tests that accept an external server ({ allowEnv: true }), set ${envVar} ` +
    `(e.g. ${envVar}=${envVar === 'REDIS_URL' ? 'redis://127.0.0.1:6379' : 'memcached://127.0.0.1:11211'})`
  if (options.explicit !== undefined) {
    if (isExecutableFile(options.explicit)) return options.explicit
    throw new Error(
      `${name}: no executable at ${options.explicit} (the binary option). ${INSTALL_HINT}, ${alternative}.`,
    )
  }
  const searchPath = options.PATH ?? process.env.PATH ?? ''
  const dirs = searchPath.split(delimiter).filter((d) => d !== '' && isAbsolute(d))
  for (const dir of dirs) {
    const candidate = join(dir, name)
    if (isExecutableFile(candidate)) return candidate
  }
  const searched = dirs.length > 0 ? dirs.join(delimiter) : '(empty)'
  throw new Error(`${name} was not found on PATH (searched: ${searched}). ${INSTALL_HINT}, ${alternative}.`)
}
