/**
 * The store contract against the native InfluxDB 2.x adapter. No 2.x server can run on the build
 * machine, so this runs only when INFLUX2_URL, INFLUX2_TOKEN, INFLUX2_ORG and INFLUX2_BUCKET point at
 * one (an existing bucket; use a scratch one: the suite writes test devices into it). Otherwise the
 * report lists one skipped test that says so.
 */
import { describe, it } from 'vitest';
import { openInflux2Store } from '../../store/influx2.ts';
import { describeStoreContract } from './contract.ts';

const url = process.env.INFLUX2_URL;
const token = process.env.INFLUX2_TOKEN;
const org = process.env.INFLUX2_ORG;
const bucket = process.env.INFLUX2_BUCKET;

if (url && token && org && bucket) {
  describeStoreContract('InfluxDB 2.x native API', async () => {
    const open = () => openInflux2Store({ url, token, org, bucket });
    let store = await open();
    return {
      store,
      async reopen() {
        await store.close();
        store = await open();
        return store;
      },
      close: () => store.close(),
    };
  });
} else {
  describe('store contract: InfluxDB 2.x native API', () => {
    it.skip('SKIPPED: no InfluxDB 2.x here; set INFLUX2_URL, INFLUX2_TOKEN, INFLUX2_ORG and INFLUX2_BUCKET to run the contract suite against it', () => {});
  });
}
