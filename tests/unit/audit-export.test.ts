import { parse } from 'csv-parse/sync';
import { csvHeader, csvRows, EXPORT_COLUMNS, ndjsonRows, neutraliseFormula } from '../../src/modules/audit/audit-export';
import type { AuditEvent } from '../../src/modules/audit/audit.service';

function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    id: '01936f3e-8b7a-7c00-8000-000000000001',
    seq: 42,
    at: '2026-01-02T03:04:05.678Z',
    action: 'provider_key.reveal',
    outcome: 'success',
    actorId: '01936f3e-8b7a-7c00-8000-0000000000aa',
    actorUsername: 'alice',
    actorRole: 'member',
    via: 'session',
    apiTokenId: null,
    keyId: '01936f3e-8b7a-7c00-8000-0000000000bb',
    projectId: '01936f3e-8b7a-7c00-8000-0000000000cc',
    ownerId: '01936f3e-8b7a-7c00-8000-0000000000aa',
    ip: '127.0.0.1',
    userAgent: 'Mozilla/5.0',
    requestId: 'req-12345678',
    reason: null,
    detail: { why: 'owner' },
    ...overrides,
  };
}

const parseCsv = (text: string): string[][] => parse(text, { relax_column_count: false });

describe('neutraliseFormula', () => {
  it.each(['=cmd|\' /C calc\'!A0', '=HYPERLINK("http://evil.example","click")', '+1', '-1', '@SUM(A1:A9)', '\tindented', '\rreturn', '=', '-'])(
    'prefixes %j with an apostrophe so a spreadsheet shows it as text',
    (value) => {
      expect(neutraliseFormula(value)).toBe(`'${value}`);
    },
  );

  it.each(['cmd=1', ' =1', 'alice@example.com', '1-2', '', "'quoted", 'ünïcødé =x', '{"name":"=x"}', '2026-01-02T03:04:05.678Z'])('leaves %j as it is', (value) => {
    expect(neutraliseFormula(value)).toBe(value);
  });
});

describe('CSV rows', () => {
  it('start with a header naming every exported column, CRLF-terminated', () => {
    expect(csvHeader()).toBe(`${EXPORT_COLUMNS.join(',')}\r\n`);
    expect(EXPORT_COLUMNS).toEqual(['id', 'seq', 'at', 'action', 'outcome', 'actorId', 'actorUsername', 'actorRole', 'via', 'apiTokenId', 'keyId', 'projectId', 'ownerId', 'ip', 'userAgent', 'requestId', 'reason', 'detail']);
  });

  it('neutralise a formula in any text column with a leading apostrophe, and leave numbers, empties and JSON alone', () => {
    const e = event({ actorUsername: '@admin', userAgent: '=cmd|\' /C calc\'!A0', requestId: '-2+3-abcdefgh', reason: '+1', ip: '\t10.0.0.1', detail: { name: '=HYPERLINK("http://evil.example","x")' } });
    const [row] = parseCsv(csvRows([e]));
    const cell = (c: (typeof EXPORT_COLUMNS)[number]) => row[EXPORT_COLUMNS.indexOf(c)];

    expect(cell('actorUsername')).toBe("'@admin");
    expect(cell('userAgent')).toBe("'=cmd|' /C calc'!A0");
    expect(cell('requestId')).toBe("'-2+3-abcdefgh");
    expect(cell('reason')).toBe("'+1");
    expect(cell('ip')).toBe("'\t10.0.0.1");
    expect(cell('detail')).toBe('{"name":"=HYPERLINK(\\"http://evil.example\\",\\"x\\")"}');
    expect(cell('seq')).toBe('42');
    expect(cell('apiTokenId')).toBe('');
    for (const value of row) expect(value).not.toMatch(/^[=+\-@\t\r]/);
  });

  it('round-trip commas, quotes, newlines and unicode exactly through a CSV parser', () => {
    const tricky = [
      'approved, by "ops"',
      'line one\nline two',
      'windows\r\nline',
      'ünïcødé ✓ 鍵 🔑',
      '"',
      ',',
      'trailing space ',
    ];
    const events = tricky.map((reason, i) => event({ id: `01936f3e-8b7a-7c00-8000-00000000000${i}`, reason, userAgent: reason, detail: { note: reason } }));
    const rows = parseCsv(csvHeader() + csvRows(events));

    expect(rows[0]).toEqual([...EXPORT_COLUMNS]);
    expect(rows).toHaveLength(tricky.length + 1);
    rows.slice(1).forEach((row, i) => {
      expect(row).toHaveLength(EXPORT_COLUMNS.length);
      expect(row[EXPORT_COLUMNS.indexOf('reason')]).toBe(tricky[i]);
      expect(row[EXPORT_COLUMNS.indexOf('userAgent')]).toBe(tricky[i]);
      expect(JSON.parse(row[EXPORT_COLUMNS.indexOf('detail')])).toEqual({ note: tricky[i] });
      expect(row[EXPORT_COLUMNS.indexOf('at')]).toBe('2026-01-02T03:04:05.678Z');
    });
  });

  it('write an unsealed event (seq null) and absent fields as empty cells', () => {
    const [row] = parseCsv(csvRows([event({ seq: null, reason: null, detail: null, ip: null })]));
    expect(row[EXPORT_COLUMNS.indexOf('seq')]).toBe('');
    expect(row[EXPORT_COLUMNS.indexOf('reason')]).toBe('');
    expect(row[EXPORT_COLUMNS.indexOf('detail')]).toBe('');
    expect(row[EXPORT_COLUMNS.indexOf('ip')]).toBe('');
  });

  it('write nothing for no events', () => {
    expect(csvRows([])).toBe('');
  });
});

describe('NDJSON rows', () => {
  it('keep formula-looking values verbatim, one parseable event per line', () => {
    const events = [
      event({ reason: '=cmd|\' /C calc\'!A0', userAgent: '@SUM(1+1)', requestId: '-2+3-abcdefgh' }),
      event({ id: '01936f3e-8b7a-7c00-8000-000000000002', reason: '+1\nsecond line, "quoted" ✓', detail: { name: '\t=x' } }),
    ];
    const text = ndjsonRows(events);

    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines.map((l) => JSON.parse(l))).toEqual(events);
  });

  it('write nothing for no events', () => {
    expect(ndjsonRows([])).toBe('');
  });
});
