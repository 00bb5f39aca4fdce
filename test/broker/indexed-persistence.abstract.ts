// Runs aedes-persistence's own abstract suite (node:test) against the indexed persistence, through the
// callback interface aedes uses. Started by indexed-persistence.test.ts with `node --import tsx --test`.
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { indexedMemoryPersistence } from '../../broker/indexed-persistence.ts';

const require = createRequire(import.meta.url);
const abstractPersistence = require('aedes-persistence/abstract.js') as (options: unknown) => void;

abstractPersistence({ test, persistence: (options: Record<string, unknown> = {}) => indexedMemoryPersistence({ ...options, broadcastSubscriptions: true }) });
