#!/usr/bin/env node
// Regenerates fixtures/export-golden/ (test/export-golden.test.ts) from what the built code
// writes now: only for an intended change of the packed file, ONNX, C or golden vectors.
//   npm run build && node tools/make-export-golden.mjs
import { writeGoldenFixtures } from '../dist/test/export-golden-files.js';

writeGoldenFixtures();
