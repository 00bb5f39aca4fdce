/** Config: defaults, environment, flags over environment, fail-fast errors that name the variable. */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { configSpecs, durationMs, helpText, parseConfig, registryPathOf, sizeBytes } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { runCli } from '../../harness/cli.ts';

describe('parseConfig', () => {
  it('uses documented defaults when nothing is set', () => {
    const { config } = parseConfig(configSpecs.broker, { argv: [], env: {} });
    expect(config.mqttPort).toBe(1883);
    expect(config.logLevel).toBe('info');
    expect(config.ingestPassword).toBeUndefined();
    expect(registryPathOf(config)).toMatch(/data\/registry\.json$/);
  });

  it('reads the environment, and a flag wins over its variable', () => {
    const env = { SENSORPIPE_MQTT_PORT: '1999', SENSORPIPE_LOG_LEVEL: 'debug' };
    expect(parseConfig(configSpecs.broker, { env }).config.mqttPort).toBe(1999);
    expect(parseConfig(configSpecs.broker, { env, argv: ['--mqtt-port', '2001'] }).config.mqttPort).toBe(2001);
    expect(parseConfig(configSpecs.broker, { env, argv: ['--mqtt-port=0'] }).config.mqttPort).toBe(0);
  });

  it.each([
    [{ SENSORPIPE_MQTT_PORT: '70000' }, [], /SENSORPIPE_MQTT_PORT/],
    [{ SENSORPIPE_MQTT_PORT: '18.5' }, [], /SENSORPIPE_MQTT_PORT.*whole number/],
    [{}, ['--mqtt-port', 'http'], /--mqtt-port/],
    [{ SENSORPIPE_LOG_LEVEL: 'loud' }, [], /SENSORPIPE_LOG_LEVEL/],
    [{}, ['--no-such-option', '1'], /no-such-option/],
  ])('fails fast on %j %j, naming the variable', (env, argv, message) => {
    expect(() => parseConfig(configSpecs.broker, { env, argv })).toThrow(message);
    try {
      parseConfig(configSpecs.broker, { env, argv });
    } catch (err) {
      expect(err).toMatchObject({ code: 'CONFIG_INVALID' });
    }
  });

  it('validates URLs by scheme', () => {
    expect(parseConfig(configSpecs.ingest, { env: { SENSORPIPE_MQTT_URL: 'mqtts://broker.example:8883' } }).config.mqttUrl).toBe('mqtts://broker.example:8883');
    expect(() => parseConfig(configSpecs.ingest, { env: { SENSORPIPE_MQTT_URL: 'http://x' } })).toThrow(/SENSORPIPE_MQTT_URL/);
    expect(() => parseConfig(configSpecs.ingest, { env: { SENSORPIPE_INFLUX_URL: 'not a url' } })).toThrow(/SENSORPIPE_INFLUX_URL/);
  });

  it('never echoes a secret in an error', () => {
    const spec = { token: { ...configSpecs.display.viewerToken, schema: durationMs } };
    expect(() => parseConfig(spec, { env: { SENSORPIPE_VIEWER_TOKEN: 'hunter2-secret' } })).toThrow(/\(hidden\)/);
    expect(() => parseConfig(spec, { env: { SENSORPIPE_VIEWER_TOKEN: 'hunter2-secret' } })).not.toThrow(/hunter2/);
  });

  // The grammar itself is tested in duration.test.ts; here, what config adds: it trims, and names the value.
  it.each([
    ['500ms', 500], ['1s', 1000], ['1.5s', 1500], ['5m', 300_000], ['2h', 7_200_000], ['7d', 604_800_000], ['1w', 604_800_000], ['250', 250], [' 5s ', 5000],
  ])('reads the duration %j', (text, ms) => {
    expect(durationMs.parse(text)).toBe(ms);
  });
  it.each(['-1s', '1 minute', '', 's', '1.5.5s', '1e999s', '1.5', '9007199254740992', '1'.repeat(400)])('refuses the duration %j', (text) => {
    expect(durationMs.safeParse(text).success).toBe(false);
  });
  it('names a bad duration in the error, with its variable', () => {
    expect(() => parseConfig(configSpecs.display, { env: { SENSORPIPE_LIVE_STUCK_TIMEOUT: '1e999s' } })).toThrow(/SENSORPIPE_LIVE_STUCK_TIMEOUT = "1e999s": "1e999s" is not a duration/);
  });
  it.each([['65536', 65536], ['64KiB', 65536], ['256MiB', 268435456], ['1GiB', 1073741824]])('reads the size %s', (text, n) => {
    expect(sizeBytes.parse(text)).toBe(n);
  });

  it('lists every option with its variable and default in --help', async () => {
    const help = helpText('usage', configSpecs.start);
    for (const spec of Object.values(configSpecs.start)) {
      expect(help).toContain(`--${spec.flag}`);
      expect(help).toContain(spec.env);
    }
    const result = await runCli(['devices', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('SENSORPIPE_REGISTRY');
  });

  it('takes --broker as the simulator\'s broker URL (issue 4), but not together with --mqtt-url, and not elsewhere', () => {
    expect(parseConfig(configSpecs.sim, { argv: ['--broker', 'mqtt://10.0.0.5:1883'], env: {} }).config.mqttUrl).toBe('mqtt://10.0.0.5:1883');
    expect(parseConfig(configSpecs.sim, { argv: [], env: { SENSORPIPE_MQTT_URL: 'mqtt://10.0.0.6:1883' } }).config.mqttUrl).toBe('mqtt://10.0.0.6:1883');
    expect(() => parseConfig(configSpecs.sim, { argv: ['--broker', 'mqtt://a:1', '--mqtt-url', 'mqtt://b:1'], env: {} })).toThrow(/--mqtt-url and --broker/);
    expect(() => parseConfig(configSpecs.sim, { argv: ['--broker', 'http://a'], env: {} })).toThrow(/^--broker = "http:\/\/a"/);
    expect(() => parseConfig(configSpecs.ingest, { argv: ['--broker', 'mqtt://a:1'], env: {} })).toThrow(/'--broker'/);
    expect(helpText('usage', configSpecs.sim)).toContain('--mqtt-url <value> (also --broker)');
  });

  it('uses one environment name per flag across all process kinds', () => {
    const flagOf = new Map<string, string>();
    for (const specs of Object.values(configSpecs)) {
      for (const spec of Object.values(specs)) {
        expect(flagOf.get(spec.env) ?? spec.flag, spec.env).toBe(spec.flag);
        flagOf.set(spec.env, spec.flag);
      }
    }
  });
});

describe('logger', () => {
  it('redacts secrets, tokens, keys and signatures', () => {
    const lines: string[] = [];
    const destination = new Writable({ write(chunk, _enc, done) { lines.push(String(chunk)); done(); } });
    const logger = createLogger({ destination, level: 'info' });
    logger.info({ password: 'p4ss', token: 't0ken', packet: { sig: 'c2ln', device: 'dev-1' }, client: { credentials: { key: 'k3y' } } }, 'hello');
    const text = lines.join('');
    for (const secret of ['p4ss', 't0ken', 'c2ln', 'k3y']) expect(text).not.toContain(secret);
    expect(text).toContain('dev-1');
    expect(text).toContain('[redacted]');
  });
});
