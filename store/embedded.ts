// Placeholder until the adapter lands (the port is committed first so that ingest and display can code against it).
import { SensorpipeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { TimeSeriesStore } from './port.ts';

export async function openEmbeddedStore(_options: { path: string; logger?: Logger | undefined }): Promise<TimeSeriesStore> {
  throw new SensorpipeError('INTERNAL', 'embedded store adapter not implemented yet');
}
