// The conformance suite of @cache/core/testing, on express 5.
import { httpAdapterSuite } from '@cache/core/testing'
import express from 'express'
import { expressHarness } from './fixtures/harness.js'

httpAdapterSuite(expressHarness('express 5', express))
