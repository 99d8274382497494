import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import { SessionTokens } from '../../src/modules/auth/sessions';

/** Session JWT verification: its own tokens until they expire, nothing forged. */
describe('SessionTokens.verify', () => {
  const secret = crypto.randomBytes(48);
  afterEach(() => jest.restoreAllMocks());

  it('accepts its own token again and again, and stops accepting it once it expires', () => {
    const tokens = new SessionTokens(secret, 60);
    const { token } = tokens.issue('user-1', 3);
    const first = tokens.verify(token);
    expect(first).toMatchObject({ sub: 'user-1', ep: 3 });
    expect(tokens.verify(token)).toEqual(first);

    const exp = first!.exp * 1000; // whole seconds: clock times are taken from it, not from the moment of issue
    jest.spyOn(Date, 'now').mockReturnValue(exp + 1_000); // past exp, within the 2 s tolerance
    expect(tokens.verify(token)).toBeDefined();
    jest.spyOn(Date, 'now').mockReturnValue(exp + 2_000); // past exp + tolerance
    expect(tokens.verify(token)).toBeUndefined();
    expect(tokens.verify(token)).toBeUndefined();
  });

  it('refuses a token with a changed byte, a foreign key, another algorithm or another audience', () => {
    const tokens = new SessionTokens(secret, 60);
    const { token } = tokens.issue('user-1', 0);
    expect(tokens.verify(token)).toBeDefined();
    const [h, p, sig] = token.split('.');
    const flipped = `${h}.${p}.${sig.slice(0, -2)}${sig.slice(-2) === 'AA' ? 'AB' : 'AA'}`;
    const forged = [
      flipped,
      new SessionTokens(crypto.randomBytes(48), 60).issue('user-1', 0).token,
      jwt.sign({ ep: 0 }, secret, { algorithm: 'HS512', subject: 'user-1', jwtid: 'j', issuer: 'provider-key-vault', audience: 'pkv-api', expiresIn: 60 }),
      jwt.sign({ ep: 0 }, secret, { algorithm: 'HS256', subject: 'user-1', jwtid: 'j', issuer: 'provider-key-vault', audience: 'other', expiresIn: 60 }),
    ];
    for (const t of forged) {
      expect(tokens.verify(t)).toBeUndefined();
      expect(tokens.verify(t)).toBeUndefined();
    }
  });
});
