import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { renderJson, renderPairs, renderTable, shortId } from '../../../agent/cli/output.ts';

describe('renderTable', () => {
  test('aligns columns two spaces apart, without trailing spaces', () => {
    const out = renderTable(
      ['NAME', 'REVISION', 'CONTACT'],
      [
        ['api', '3f2a9c1d', 'oncall@example.com'],
        ['a-much-longer-name', 'c0ffee', 'x'],
      ],
    );
    assert.equal(
      out,
      [
        'NAME                REVISION  CONTACT',
        'api                 3f2a9c1d  oncall@example.com',
        'a-much-longer-name  c0ffee    x',
        '',
      ].join('\n'),
    );
  });

  test('shows a missing value as - and keeps control characters from breaking a row', () => {
    const out = renderTable(['A', 'B', 'C'], [[undefined, 'line1\nline2', '']]);
    assert.equal(out, 'A  B            C\n-  line1 line2  -\n');
  });

  test('an empty list still prints the header', () => {
    assert.equal(renderTable(['NAME', 'IMAGE'], []), 'NAME  IMAGE\n');
  });
});

describe('renderPairs and renderJson', () => {
  test('pairs align their values', () => {
    assert.equal(
      renderPairs([
        ['ID', 'abc'],
        ['IMAGE', 'x:1'],
      ]),
      'ID     abc\nIMAGE  x:1\n',
    );
  });

  test('JSON output parses back to the value', () => {
    const value = { a: [1, 'b'], c: { d: null } };
    assert.deepEqual(JSON.parse(renderJson(value)), value);
  });

  test('short ids drop the algorithm and keep 12 hex characters', () => {
    assert.equal(shortId('sha256:1f9271b10d107e727fb3b929c8d4080200a02b'), '1f9271b10d10');
    assert.equal(shortId('8274f9057e9b333eeb98'), '8274f9057e9b');
  });
});
