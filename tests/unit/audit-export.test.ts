import { parse } from 'csv-parse/sync';
import { csvHeader, csvRows, EXPORT_COLUMNS, ndjsonRows, neutraliseFormula } from '../../src/modules/audit/audit-export';
import type { ExportedEvent } from '../../src/modules/audit/audit.service';

function event(overrides: Partial<ExportedEvent> = {}): ExportedEvent {
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
    keyName: 'ark-chat-prod',
    projectId: '01936f3e-8b7a-7c00-8000-0000000000cc',
    projectName: '对话机器人',
    ownerId: '01936f3e-8b7a-7c00-8000-0000000000aa',
    ownerUsername: 'alice',
    ip: '127.0.0.1',
    userAgent: 'Mozilla/5.0',
    requestId: 'req-12345678',
    reason: null,
    detail: { why: 'owner' },
    ...overrides,
  };
}

const parseCsv = (text: string): string[][] => parse(text, { relax_column_count: false });

/** Formula triggers of spreadsheets (Excel, LibreOffice, Google Sheets), ASCII and full-width. */
const TRIGGER = /^[=+\-@\uff1d\uff0b\uff0d\uff20]/;

/**
 * Hostile cells: triggers at the start, after a leading space, and after every separator a spreadsheet may be told to
 * split on (comma, semicolon, tab, pipe, space) or a quote that would open a field there.
 */
const HOSTILE_CELLS = [
  '=cmd|\' /C calc\'!A0', '=HYPERLINK("http://evil.example","click")', '+1', '-1', '@SUM(A1:A9)', '\tindented', '\rreturn', '=', '-',
  ' =1', '  +SUM(1,2)', 'ok;=cmd|\' /C calc\'!A0', 'ok;+1', 'ok\t=1+1', 'a\t-2', 'ok|@SUM(1)', 'ok,=1', 'ok, =1', 'two words =2+2',
  'line\n=1', 'line\r\n-1', 'quoted "=1"', 'x;"=1"', '\t=x', ';=1', '|=1', '\uff1d1+1', 'ok;\uff0b1', 'ok \uff20SUM(1)', 'ok;\uff0d1',
  '{"name":"=x"}', '==1', ';;=1', 'a;b;=c;d',
];

/** Every field a reader gets when it splits a line on `sep`, taking a field's opening quote off as spreadsheets do. */
function fieldsUnder(line: string, sep: string): string[] {
  return line.split(sep).map((f) => f.replace(/^[\s"]+/, ''));
}

describe('neutraliseFormula', () => {
  it.each(['=cmd|\' /C calc\'!A0', '=HYPERLINK("http://evil.example","click")', '+1', '-1', '@SUM(A1:A9)', '=', '-', '\uff1d1'])(
    'prefixes %j with an apostrophe so a spreadsheet shows it as text',
    (value) => {
      expect(neutraliseFormula(value)).toBe(`'${value}`);
    },
  );

  it.each([
    [' =1', " '=1"],
    ['ok;=cmd', "ok;'=cmd"],
    ['ok\t=1+1', "ok\t'=1+1"],
    ['\t=x', "'\t'=x"],
    ['\tindented', "'\tindented"],
    ['two words =2+2', "two words '=2+2"],
    ['x;"=1"', 'x;"\'=1"'],
    ['{"name":"=x"}', '{"name":"\'=x"}'],
  ])('puts an apostrophe before a trigger where another separator would start a field: %j → %j', (value, guarded) => {
    expect(neutraliseFormula(value)).toBe(guarded);
  });

  it.each(['cmd=1', 'alice@example.com', '1-2', '', "'quoted", 'ünïcødé', '{"n":-1}', '2026-01-02T03:04:05.678Z', 'Mozilla/5.0 (X11; Linux x86_64)'])('leaves %j as it is', (value) => {
    expect(neutraliseFormula(value)).toBe(value);
  });

  it.each(HOSTILE_CELLS.map((c) => [c]))('leaves no field starting with a formula in %j, whatever separator a spreadsheet splits it on', (value) => {
    const line = neutraliseFormula(value);
    for (const sep of [',', ';', '\t', '|', ' ', '\n', '\r']) {
      for (const field of fieldsUnder(line, sep)) expect({ sep, field, starts: TRIGGER.test(field) }).toEqual({ sep, field, starts: false });
    }
  });
});

describe('CSV rows of hostile cells', () => {
  it.each(HOSTILE_CELLS.map((c) => [c]))('keep %j one quoted cell when it holds a separator, and no field of the line under any separator starts a formula', (value) => {
    const line = csvRows([event({ reason: value, userAgent: value, detail: { note: value } })]);
    const [row] = parseCsv(line);
    expect(row).toHaveLength(EXPORT_COLUMNS.length);
    expect(row[EXPORT_COLUMNS.indexOf('reason')]).toBe(neutraliseFormula(value));
    for (const sep of [',', ';', '\t', '|', ' ']) {
      for (const field of fieldsUnder(line, sep)) expect({ sep, field, starts: TRIGGER.test(field) }).toEqual({ sep, field, starts: false });
    }
  });
});

describe('CSV rows', () => {
  it('start with a header naming every exported column, CRLF-terminated', () => {
    expect(csvHeader()).toBe(`${EXPORT_COLUMNS.join(',')}\r\n`);
    expect(EXPORT_COLUMNS).toEqual(['id', 'seq', 'at', 'action', 'outcome', 'actorId', 'actorUsername', 'actorRole', 'via', 'apiTokenId', 'keyId', 'keyName', 'projectId', 'projectName', 'ownerId', 'ownerUsername', 'ip', 'userAgent', 'requestId', 'reason', 'detail']);
  });

  it('name the key, project and owner beside their ids, formula-guarded like every text cell', () => {
    const [row] = parseCsv(csvRows([event({ keyName: '+SUM(1,2)', ownerUsername: '@cmd' })]));
    const cell = (c: (typeof EXPORT_COLUMNS)[number]) => row[EXPORT_COLUMNS.indexOf(c)];
    expect(EXPORT_COLUMNS.indexOf('keyName')).toBe(EXPORT_COLUMNS.indexOf('keyId') + 1);
    expect(EXPORT_COLUMNS.indexOf('projectName')).toBe(EXPORT_COLUMNS.indexOf('projectId') + 1);
    expect(EXPORT_COLUMNS.indexOf('ownerUsername')).toBe(EXPORT_COLUMNS.indexOf('ownerId') + 1);
    expect(cell('keyName')).toBe("'+SUM(1,2)");
    expect(cell('projectName')).toBe('对话机器人');
    expect(cell('ownerUsername')).toBe("'@cmd");
  });

  it('neutralise a formula in any text column with a leading apostrophe (inside JSON too), and leave numbers and empties alone', () => {
    const e = event({ actorUsername: '@admin', userAgent: '=cmd|\' /C calc\'!A0', requestId: '-2+3-abcdefgh', reason: '+1', ip: '\t10.0.0.1', detail: { name: '=HYPERLINK("http://evil.example","x")' } });
    const [row] = parseCsv(csvRows([e]));
    const cell = (c: (typeof EXPORT_COLUMNS)[number]) => row[EXPORT_COLUMNS.indexOf(c)];

    expect(cell('actorUsername')).toBe("'@admin");
    expect(cell('userAgent')).toBe("'=cmd|' /C calc'!A0");
    expect(cell('requestId')).toBe("'-2+3-abcdefgh");
    expect(cell('reason')).toBe("'+1");
    expect(cell('ip')).toBe("'\t10.0.0.1");
    expect(cell('detail')).toBe('{"name":"\'=HYPERLINK(\\"http://evil.example\\",\\"x\\")"}');
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
