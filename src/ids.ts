import crypto from 'node:crypto';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

let lastMs = 0;
let counter = 0;

/**
 * RFC 9562 UUIDv7: time-ordered, so InnoDB appends instead of splitting pages and ids sort by creation. Within one
 * millisecond the 12-bit rand_a field counts up (RFC 9562 §6.2 method 1), so ids from this process never go backwards.
 */
export function newId(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    counter = crypto.randomInt(0, 0x800);
  } else if (++counter > 0xfff) {
    lastMs += 1;
    counter = crypto.randomInt(0, 0x800);
  }
  const b = crypto.randomBytes(16);
  b.writeUIntBE(lastMs, 0, 6);
  b[6] = 0x70 | (counter >> 8);
  b[7] = counter & 0xff;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
