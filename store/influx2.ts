// Placeholder until the adapter lands (the port is committed first so that ingest and display can code against it).
import { SensorpipeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { TimeSeriesStore } from './port.ts';

export async function openInflux2Store(_options: { url: string; org: string; bucket: string; token?: string | undefined; logger?: Logger | undefined }): Promise<TimeSeriesStore> {
  throw new SensorpipeError('INTERNAL', 'influx2 store adapter not implemented yet');
}
