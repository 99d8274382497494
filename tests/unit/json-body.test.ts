import { findDuplicateKey } from '../../src/http/json-body';

describe('findDuplicateKey', () => {
  it.each([
    ['{"a":1,"a":2}', 'a'],
    ['{"a":{"b":1,"c":{"b":2},"b":3}}', 'b'],
    ['[{"x":1},{"x":2,"y":{"x":1},"x":3}]', 'x'],
    ['{"\\u0061":1,"a":2}', 'a'],
    ['{"k\\"q":1,"k\\"q":2}', 'k"q'],
  ])('finds the repeated key in %s', (text, key) => {
    expect(findDuplicateKey(text)).toBe(key);
  });

  it.each(['{"a":1,"b":2}', '[{"a":1},{"a":2}]', '{"a":"a","b":["a","a"]}', '{"a":{"a":{"a":1}}}', '"a"', '[]', '{}', '{"a":"},{\\"a\\":"}'])(
    'accepts %s',
    (text) => {
      expect(findDuplicateKey(text)).toBeUndefined();
    },
  );
});
