// The conformance suite of @cache/core/testing, on express 4 (installed under the alias `express4`).
import { httpAdapterSuite } from '@cache/core/testing'
import { expressHarness, loadExpress } from './fixtures/harness.js'

httpAdapterSuite(expressHarness('express 4', loadExpress('express4')))
