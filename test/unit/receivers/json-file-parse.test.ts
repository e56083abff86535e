import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectSeverity } from '../../../agent/pipeline/log-record.ts';
import { newLineFields, parseLine, parseTimeNano } from '../../../agent/receivers/json-file/parse.ts';

/** A line exactly as the engine's json-file writer produces it (keys in its order). */
function engineLine(log: string, stream: string, time: string, attrs?: Record<string, string>): string {
  const a = attrs ? `,"attrs":${JSON.stringify(attrs)}` : '';
  return `{"log":${JSON.stringify(log)},"stream":"${stream}"${a},"time":"${time}"}`;
}

const T = '2026-12-04T15:22:44.123456789Z';

test('plain, escaped, unicode and partial log values are decoded exactly', () => {
  const cases = [
    'GET /index.html HTTP/1.1 200\n',
    'with "quotes" and \\backslashes\\ and a tab\t\n',
    'ünïcödé ✓ and an emoji 🚀\n',
    'ends with a backslash-n literal \\n',
    'a 16 KiB partial without newline',
    '{"level":"warn","msg":"<b>&amp;</b>","stream":"x"}\n',
    '","stream":"fake","time":"2000-01-01T00:00:00Z"}\n',
    '',
  ];
  for (const log of cases) {
    for (const stream of ['stdout', 'stderr']) {
      const line = engineLine(log, stream, T);
      const fast = newLineFields();
      assert.equal(parseLine(line, fast), true, line);
      assert.equal(fast.attrs, undefined);
      assert.equal(fast.log, log);
      assert.equal(fast.stream, stream);
      assert.equal(fast.time, T);
    }
  }
});

test('attrs are decoded into string attributes', () => {
  const fields = newLineFields();
  const line = engineLine('x\n', 'stdout', T, {
    tag: 'api',
    'com.example.team': 'payments',
    time: 'not-the-time',
  });
  assert.equal(parseLine(line, fields), true);
  assert.deepEqual(fields.attrs, { tag: 'api', 'com.example.team': 'payments', time: 'not-the-time' });
  assert.equal(fields.time, T);
});

test('a line with keys in another order still parses, and a non-record line is rejected', () => {
  const fields = newLineFields();
  assert.equal(parseLine(`{"time":"${T}","stream":"stderr","log":"reordered\\n"}`, fields), true);
  assert.deepEqual([fields.log, fields.stream, fields.time], ['reordered\n', 'stderr', T]);
  assert.equal(parseLine('{"log":"torn line with no end', fields), false);
  assert.equal(parseLine('not json at all', fields), false);
  assert.equal(parseLine('{"log":1,"time":"x"}', fields), false);
});

test('RFC3339Nano timestamps become exact Unix nanoseconds', () => {
  const second = BigInt(Date.parse('2026-12-04T15:22:44Z')) * 1_000_000n;
  assert.equal(parseTimeNano(T), second + 123_456_789n);
  assert.equal(parseTimeNano('2026-12-04T15:22:44.5Z'), second + 500_000_000n);
  assert.equal(parseTimeNano('2026-12-04T15:22:44.000000001Z'), second + 1n);
  assert.equal(parseTimeNano('2026-12-04T15:22:44Z'), second);
  assert.equal(parseTimeNano('2026-12-04T17:22:44.25+02:00'), second + 250_000_000n);
  assert.equal(parseTimeNano('yesterday'), undefined);
});

test('severity comes from a JSON level field, else stderr is ERROR and stdout unspecified', () => {
  assert.deepEqual(detectSeverity('{"level":"warn","msg":"x"}', 'stdout'), [13, 'WARN']);
  assert.deepEqual(detectSeverity('{"msg":"x","level": "DEBUG"}', 'stderr'), [5, 'DEBUG']);
  assert.deepEqual(detectSeverity('{"level":50,"msg":"pino"}', 'stdout'), [17, 'ERROR']);
  assert.deepEqual(detectSeverity('plain text', 'stderr'), [17, 'ERROR']);
  assert.equal(detectSeverity('plain text', 'stdout'), undefined);
  assert.equal(detectSeverity('{"level":"bogus"}', 'stdout'), undefined);
});
