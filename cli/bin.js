#!/usr/bin/env node
// Entry point of the `sensorpipe` command. Node 20 cannot run TypeScript by itself, so tsx's loader
// is registered here and the real CLI (cli/main.ts) is loaded through it.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
