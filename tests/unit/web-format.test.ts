/** How the console writes times and plurals (src/web/i18n/format.ts): the same unambiguous form in both languages. */
import { en } from '../../src/web/i18n/en';
import { zh } from '../../src/web/i18n/zh';
import { formatDate, formatDateTime, pluralForm, zoneOf } from '../../src/web/i18n/format';

describe('formatDateTime', () => {
  it.each([
    ['Asia/Shanghai', '2026-12-04 20:25:59 UTC+8'],
    ['UTC', '2026-12-04 12:25:59 UTC'],
    ['Asia/Kolkata', '2026-12-04 17:55:59 UTC+5:30'],
    ['America/New_York', '2026-12-04 07:25:59 UTC-5'],
    ['Pacific/Kiritimati', '2026-12-05 02:25:59 UTC+14'],
  ])('names the zone: %s → %s', (zone, text) => {
    expect(formatDateTime('2026-12-04T12:25:59.123Z', zone)).toBe(text);
  });

  it('writes midnight as 00, never 24, and follows daylight saving', () => {
    expect(formatDateTime('2026-12-04T16:00:00Z', 'Asia/Shanghai')).toBe('2026-12-05 00:00:00 UTC+8');
    expect(formatDateTime('2026-07-04T12:00:00Z', 'America/New_York')).toBe('2026-07-04 08:00:00 UTC-4');
    expect(zoneOf('2026-07-04T12:00:00Z', 'Europe/Berlin')).toBe('UTC+2');
    expect(zoneOf('2026-01-04T12:00:00Z', 'Europe/Berlin')).toBe('UTC+1');
    expect(formatDate('2026-12-04T16:00:00Z', 'Asia/Shanghai')).toBe('2026-12-05');
  });
});

describe('pluralForm', () => {
  const enRules = new Intl.PluralRules('en-GB');
  const zhRules = new Intl.PluralRules('zh-CN');
  it('picks “1 newer event is” and “2 newer events are” in English', () => {
    expect(en[pluralForm(en, enRules, 'audit.unsealed', 1)].replace('{n}', '1')).toBe('1 newer event is not sealed yet.');
    expect(en[pluralForm(en, enRules, 'audit.unsealed', 2)].replace('{n}', '2')).toBe('2 newer events are not sealed yet.');
    expect(en[pluralForm(en, enRules, 'audit.verifyOk', 1)]).toBe('The trail is intact: {n} sealed event checked.');
    expect(en[pluralForm(en, enRules, 'audit.verifyOk', 0)]).toBe('The trail is intact: {n} sealed events checked.');
  });

  it('has one form in Chinese', () => {
    expect(pluralForm(zh, zhRules, 'audit.unsealed', 1)).toBe('audit.unsealed.other');
    expect(zh['audit.unsealed.other']).toBe('另有 {n} 条较新的事件尚未封存。');
  });
});
