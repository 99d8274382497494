/** The console's two dictionaries: the same keys and placeholders, and the Chinese wording the issue settled. */
import { en } from '../../src/web/i18n/en';
import { zh } from '../../src/web/i18n/zh';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from '../../src/modules/audit/audit-event.entity';

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe('the Chinese dictionary', () => {
  it('has every English key and fills the same placeholders', () => {
    expect(Object.keys(zh).sort()).toEqual(Object.keys(en).sort());
    for (const k of Object.keys(en) as Array<keyof typeof en>) expect({ k, p: placeholders(zh[k]) }).toEqual({ k, p: placeholders(en[k]) });
  });

  it('calls the secret 密钥值 (密钥 is the key), the statuses 已启用/已停用 and the hint 尾号', () => {
    expect(zh['keyForm.secret']).toBe('密钥值');
    expect(zh['reveal.masked']).toBe('密钥值（已隐藏）');
    expect(zh['keys.replaceSecret']).toBe('更换密钥值');
    expect(zh['status.active']).toBe('已启用');
    expect(zh['status.disabled']).toBe('已停用');
    expect(zh['keys.col.hint']).toBe('尾号');
    // Where the secret itself is meant, it is never the bare 密钥.
    for (const k of ['keyForm.secretHelp', 'keyForm.replaceHelp', 'reveal.note', 'error.payload_too_large', 'keys.revealNamed'] as const) expect(zh[k]).toContain('密钥值');
  });

  it('names every audit action and outcome the server records, in both languages', () => {
    for (const k of [...AUDIT_ACTIONS.map((a) => `action.${a}`), ...AUDIT_OUTCOMES.map((o) => `outcome.${o}`)]) expect({ k, en: k in en, zh: k in zh }).toEqual({ k, en: true, zh: true });
  });

  it('keeps one formal tone: 您, never 你', () => {
    for (const [k, v] of Object.entries(zh)) expect({ k, informal: v.includes('你') }).toEqual({ k, informal: false });
  });
});
