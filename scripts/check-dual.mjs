// Checks that a built package gives ESM and CommonJS users the same names on every entry point of its exports map.
// Run from a package directory after its build: node ../../scripts/check-dual.mjs
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const dir = resolve(process.argv[2] ?? '.')
const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
const require = createRequire(join(dir, 'package.json'))
let failures = 0
for (const [subpath, target] of Object.entries(pkg.exports ?? {})) {
  if (typeof target !== 'object' || !target.import || !target.require) continue
  const esmFile = join(dir, target.import.default)
  const cjsFile = join(dir, target.require.default)
  const esm = Object.keys(await import(pathToFileURL(esmFile).href))
    .filter((k) => k !== 'default')
    .sort()
  const cjs = Object.keys(require(cjsFile))
    .filter((k) => k !== 'default' && k !== '__esModule')
    .sort()
  const missing = esm.filter((k) => !cjs.includes(k)).concat(cjs.filter((k) => !esm.includes(k)))
  if (missing.length > 0 || esm.length === 0) {
    failures++
    console.error(`${pkg.name}${subpath.slice(1)}: ESM and CJS differ (${missing.join(', ') || 'no exports'})`)
  } else {
    console.log(`${pkg.name}${subpath.slice(1)}: ESM and CJS both export ${esm.length} names`)
  }
}
process.exit(failures > 0 ? 1 : 0)
