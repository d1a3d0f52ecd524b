// Runs every test project in one vitest run, then prints one plain closing line for the whole run
// ("tests: N passed, N failed") and fails when the run executed no test, so CI is never green on an empty run.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const report = '.vitest-results.json'
rmSync(report, { force: true })
const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs')
const run = spawnSync(
  process.execPath,
  [vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)],
  { stdio: 'inherit' },
)
if (!existsSync(report)) {
  console.error(`vitest wrote no report (exit ${run.status ?? run.signal}): see its output above`)
  process.exit(1)
}
const result = JSON.parse(readFileSync(report, 'utf8'))
const passed = result.numPassedTests ?? 0
const failed = (result.numFailedTests ?? 0) + (result.numFailedTestSuites ?? 0)
const skipped = (result.numPendingTests ?? 0) + (result.numTodoTests ?? 0)
console.log(`\ntests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
if (passed === 0) console.error('no test ran')
process.exit(run.status === 0 && failed === 0 && passed > 0 ? 0 : 1)
