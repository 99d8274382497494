import crypto from 'node:crypto';
import { aad, open, seal } from '../../src/crypto/aead';
import { Envelope, FORMAT_VERSION, secretAad } from '../../src/crypto/envelope';
import { Keyring } from '../../src/crypto/keyring';
import { IntegrityError } from '../../src/errors';
import { dekAadOf, flipBit, forgeGcmOpen, forgeGcmSeal, legacySecretAadOf, nodeGcmOpen, secretAadOf } from '../support/crypto-helpers';

const hex = (s: string) => Buffer.from(s, 'hex');

/** The 256-bit-key AES-GCM vectors of McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13–16. */
const K15 = 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308';
const P15 =
  'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255';
const C15 =
  '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad';
const VECTORS = [
  { name: 'test case 13 (empty plaintext, zero key)', key: '00'.repeat(32), iv: '00'.repeat(12), plaintext: '', aad: '', ciphertext: '', tag: '530f8afbc74536b9a963b4f1c4cb738b' },
  { name: 'test case 14 (one zero block)', key: '00'.repeat(32), iv: '00'.repeat(12), plaintext: '00'.repeat(16), aad: '', ciphertext: 'cea7403d4d606b6e074ec5d3baf39d18', tag: 'd0d1c8a799996bf0265b98b5d48ab919' },
  { name: 'test case 15 (four blocks)', key: K15, iv: 'cafebabefacedbaddecaf888', plaintext: P15, aad: '', ciphertext: C15, tag: 'b094dac5d93471bdec1a502270e3cc6c' },
  {
    name: 'test case 16 (partial block, with AAD)',
    key: K15,
    iv: 'cafebabefacedbaddecaf888',
    plaintext: P15.slice(0, 120),
    aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
    ciphertext: C15.slice(0, 120),
    tag: '76fc6ece0f4e1768cddf8853bb2d551b',
  },
];

describe('aead (AES-256-GCM through node:crypto)', () => {
  describe.each(VECTORS)('McGrew–Viega $name', (v) => {
    it('opens the published ciphertext and tag to the published plaintext', () => {
      const out = open(hex(v.key), { iv: hex(v.iv), tag: hex(v.tag), ciphertext: hex(v.ciphertext) }, hex(v.aad));
      expect(out.toString('hex')).toBe(v.plaintext);
    });

    it('produces the published ciphertext and tag with the published IV (node:crypto, as seal() calls it)', () => {
      const c = crypto.createCipheriv('aes-256-gcm', hex(v.key), hex(v.iv), { authTagLength: 16 });
      c.setAAD(hex(v.aad));
      const ct = Buffer.concat([c.update(hex(v.plaintext)), c.final()]);
      expect(ct.toString('hex')).toBe(v.ciphertext);
      expect(c.getAuthTag().toString('hex')).toBe(v.tag);
    });

    it('agrees with node-forge, the independent implementation the tests use', () => {
      const f = forgeGcmSeal(hex(v.key), hex(v.iv), hex(v.plaintext), hex(v.aad));
      expect(f.ciphertext.toString('hex')).toBe(v.ciphertext);
      expect(f.tag.toString('hex')).toBe(v.tag);
      expect(forgeGcmOpen(hex(v.key), hex(v.iv), hex(v.ciphertext), hex(v.tag), hex(v.aad))?.toString('hex')).toBe(v.plaintext);
    });

    it('refuses the published ciphertext with one tag bit flipped', () => {
      expect(() => open(hex(v.key), { iv: hex(v.iv), tag: flipBit(hex(v.tag), 7), ciphertext: hex(v.ciphertext) }, hex(v.aad))).toThrow(IntegrityError);
    });
  });

  it('refuses a changed ciphertext, IV or AAD with IntegrityError, never returning bytes', () => {
    const v = VECTORS[3];
    const good = { iv: hex(v.iv), tag: hex(v.tag), ciphertext: hex(v.ciphertext) };
    expect(() => open(hex(v.key), { ...good, ciphertext: flipBit(good.ciphertext, 100) }, hex(v.aad))).toThrow(IntegrityError);
    expect(() => open(hex(v.key), { ...good, iv: flipBit(good.iv, 3) }, hex(v.aad))).toThrow(IntegrityError);
    expect(() => open(hex(v.key), good, flipBit(hex(v.aad), 0))).toThrow(IntegrityError);
    expect(() => open(hex(v.key), good, Buffer.alloc(0))).toThrow(IntegrityError);
    expect(() => open(flipBit(hex(v.key), 255), good, hex(v.aad))).toThrow(IntegrityError);
  });

  it('refuses truncated tags and IVs of the wrong length instead of accepting a shorter tag', () => {
    const v = VECTORS[2];
    const good = { iv: hex(v.iv), tag: hex(v.tag), ciphertext: hex(v.ciphertext) };
    expect(() => open(hex(v.key), { ...good, tag: good.tag.subarray(0, 12) }, Buffer.alloc(0))).toThrow(IntegrityError);
    expect(() => open(hex(v.key), { ...good, tag: good.tag.subarray(0, 4) }, Buffer.alloc(0))).toThrow(IntegrityError);
    expect(() => open(hex(v.key), { ...good, iv: Buffer.concat([good.iv, Buffer.alloc(4)]) }, Buffer.alloc(0))).toThrow(IntegrityError);
  });

  it('seals with a fresh 96-bit IV and a 128-bit tag that node:crypto and node-forge both open', () => {
    const key = crypto.randomBytes(32);
    const plaintext = Buffer.from('sk-ant-api03-some secret text', 'utf8');
    const ad = aad('pkv/v1/test', 'a', 1);
    const s = seal(key, plaintext, ad);
    expect(s.iv).toHaveLength(12);
    expect(s.tag).toHaveLength(16);
    expect(s.ciphertext).toHaveLength(plaintext.length);
    expect(s.ciphertext.equals(plaintext)).toBe(false);
    expect(nodeGcmOpen(key, s.iv, s.ciphertext, s.tag, ad)?.equals(plaintext)).toBe(true);
    expect(forgeGcmOpen(key, s.iv, s.ciphertext, s.tag, ad)?.equals(plaintext)).toBe(true);
    expect(forgeGcmOpen(key, s.iv, s.ciphertext, s.tag, aad('pkv/v1/test', 'b', 1))).toBeNull();
  });

  it('never repeats an IV across many seals under one key', () => {
    const key = crypto.randomBytes(32);
    const ivs = new Set<string>();
    const cts = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const s = seal(key, Buffer.from('same plaintext'), Buffer.alloc(0));
      ivs.add(s.iv.toString('hex'));
      cts.add(s.ciphertext.toString('hex'));
    }
    expect(ivs.size).toBe(5000);
    expect(cts.size).toBe(5000);
  });

  it('builds AAD as the label and fields joined by NUL, in UTF-8', () => {
    expect(aad('pkv/v1/dek', 'k-1', 3).equals(Buffer.from('pkv/v1/dek\u0000k-1\u00003', 'utf8'))).toBe(true);
    expect(aad('pkv/v1/dek', 'k', 1).equals(dekAadOf('k', 1))).toBe(true);
    const b = { keyId: 'k', ownerId: 'o', projectId: 'p', provider: 'openai', baseUrl: 'https://api.example.com/v1' };
    expect(secretAad(b).equals(secretAadOf(b))).toBe(true);
    expect(secretAad({ ...b, baseUrl: null }).equals(Buffer.from('pkv/v2/secret\u0000k\u0000o\u0000p\u0000openai\u0000', 'utf8'))).toBe(true);
    // Field boundaries are unambiguous: moving characters between fields changes the AAD.
    expect(aad('l', 'ab', 'c').equals(aad('l', 'a', 'bc'))).toBe(false);
  });
});

describe('Envelope (data key per secret, wrapped under the keyring)', () => {
  const masterKey = crypto.randomBytes(32);
  const keyring = new Keyring([{ version: 1, key: masterKey }]);
  const envelope = new Envelope(keyring);
  const binding = { keyId: crypto.randomUUID(), ownerId: crypto.randomUUID(), projectId: crypto.randomUUID(), provider: 'openai', baseUrl: null as string | null };
  const secret = Buffer.from('sk-proj-abcdefghijklmnopqrstuvwxyz0123456789', 'utf8');

  it('seals a secret that opens again under the same binding', () => {
    const sealed = envelope.seal(binding, secret);
    expect(sealed.formatVersion).toBe(FORMAT_VERSION);
    expect(sealed.kekVersion).toBe(1);
    expect(sealed.wrappedDek).toHaveLength(32);
    expect(sealed.dekIv).toHaveLength(12);
    expect(sealed.dekTag).toHaveLength(16);
    expect(sealed.secretIv).toHaveLength(12);
    expect(sealed.secretTag).toHaveLength(16);
    expect(envelope.open(binding, sealed).equals(secret)).toBe(true);
  });

  it('gives every seal its own data key and IVs, even for the same secret and binding', () => {
    const a = envelope.seal(binding, secret);
    const b = envelope.seal(binding, secret);
    const dekA = nodeGcmOpen(masterKey, a.dekIv!, a.wrappedDek!, a.dekTag!, dekAadOf(binding.keyId, 1))!;
    const dekB = nodeGcmOpen(masterKey, b.dekIv!, b.wrappedDek!, b.dekTag!, dekAadOf(binding.keyId, 1))!;
    expect(dekA).toHaveLength(32);
    expect(dekA.equals(dekB)).toBe(false);
    expect(a.secretCiphertext!.equals(b.secretCiphertext!)).toBe(false);
    expect(a.secretIv!.equals(b.secretIv!)).toBe(false);
  });

  it('stores bytes an independent implementation opens with the documented AADs and the master key alone', () => {
    const sealed = envelope.seal(binding, secret);
    const dek = forgeGcmOpen(masterKey, sealed.dekIv!, sealed.wrappedDek!, sealed.dekTag!, dekAadOf(binding.keyId, 1));
    expect(dek).not.toBeNull();
    const plain = forgeGcmOpen(dek!, sealed.secretIv!, sealed.secretCiphertext!, sealed.secretTag!, secretAadOf(binding));
    expect(plain?.toString('utf8')).toBe(secret.toString('utf8'));
  });

  it.each([
    ['another key id', { keyId: crypto.randomUUID() }],
    ['another owner', { ownerId: crypto.randomUUID() }],
    ['another project', { projectId: crypto.randomUUID() }],
    ['another provider', { provider: 'anthropic' }],
    ['another baseUrl', { baseUrl: 'https://attacker.example/v1' }],
  ])('refuses to open a secret under %s (AAD binds it to its row)', (_label, change) => {
    const sealed = envelope.seal(binding, secret);
    expect(() => envelope.open({ ...binding, ...change }, sealed)).toThrow(IntegrityError);
  });

  it('opens a format-1 sealing (key, owner and project bound; no provider or baseUrl) only when asked to', () => {
    const dek = crypto.randomBytes(32);
    const iv = crypto.randomBytes(12);
    const legacy = forgeGcmSeal(dek, iv, secret, legacySecretAadOf(binding));
    const wrapped = keyring.wrap(dek, binding.keyId);
    const stored = { formatVersion: 1, kekVersion: wrapped.kekVersion, wrappedDek: wrapped.ciphertext, dekIv: wrapped.iv, dekTag: wrapped.tag, secretCiphertext: legacy.ciphertext, secretIv: iv, secretTag: legacy.tag };
    expect(() => envelope.open(binding, stored)).toThrow(IntegrityError);
    expect(envelope.open(binding, stored, { legacy: true }).equals(secret)).toBe(true);
    // Relabelled as format 2 it opens under neither AAD.
    expect(() => envelope.open(binding, { ...stored, formatVersion: 2 }, { legacy: true })).toThrow(IntegrityError);
  });

  it('binds the secret by AAD alone: the right data key with another owner in the AAD does not open it', () => {
    const sealed = envelope.seal(binding, secret);
    const dek = nodeGcmOpen(masterKey, sealed.dekIv!, sealed.wrappedDek!, sealed.dekTag!, dekAadOf(binding.keyId, 1))!;
    const right = secretAadOf(binding);
    const moved = secretAadOf({ ...binding, ownerId: crypto.randomUUID() });
    expect(nodeGcmOpen(dek, sealed.secretIv!, sealed.secretCiphertext!, sealed.secretTag!, right)?.equals(secret)).toBe(true);
    expect(nodeGcmOpen(dek, sealed.secretIv!, sealed.secretCiphertext!, sealed.secretTag!, moved)).toBeNull();
  });

  it('binds the data key to its KEK version: a wrapped key relabelled as another version does not unwrap', () => {
    const ring = new Keyring([
      { version: 2, key: masterKey },
      { version: 1, key: masterKey },
    ]);
    const sealed = new Envelope(ring).seal(binding, secret);
    expect(sealed.kekVersion).toBe(2);
    expect(() => new Envelope(ring).open(binding, { ...sealed, kekVersion: 1 })).toThrow(IntegrityError);
  });

  it.each(['wrappedDek', 'dekIv', 'dekTag', 'secretCiphertext', 'secretIv', 'secretTag'] as const)('fails closed on one flipped bit in %s', (field) => {
    const sealed = envelope.seal(binding, secret);
    const tampered = { ...sealed, [field]: flipBit(sealed[field]!, 5) };
    expect(() => envelope.open(binding, tampered)).toThrow(IntegrityError);
  });

  it('refuses incomplete rows, unknown format versions and unconfigured KEK versions', () => {
    const sealed = envelope.seal(binding, secret);
    expect(() => envelope.open(binding, { ...sealed, secretTag: null })).toThrow(IntegrityError);
    expect(() => envelope.open(binding, { ...sealed, wrappedDek: null })).toThrow(IntegrityError);
    expect(() => envelope.open(binding, { ...sealed, formatVersion: 3 })).toThrow(IntegrityError);
    expect(() => envelope.open(binding, { ...sealed, formatVersion: 1 }, { legacy: true })).toThrow(IntegrityError);
    expect(() => envelope.open(binding, { ...sealed, kekVersion: 9 })).toThrow(IntegrityError);
  });

  it('fails to open under a different master key', () => {
    const sealed = envelope.seal(binding, secret);
    const other = new Envelope(new Keyring([{ version: 1, key: crypto.randomBytes(32) }]));
    expect(() => other.open(binding, sealed)).toThrow(IntegrityError);
  });

  it('rewraps only the data key under the new active version; the secret still opens', () => {
    const v2 = crypto.randomBytes(32);
    const ring = new Keyring([
      { version: 2, key: v2 },
      { version: 1, key: masterKey },
    ]);
    const sealed = envelope.seal(binding, secret);
    const rewrapped = { ...sealed, ...new Envelope(ring).rewrap(binding.keyId, sealed) };
    expect(rewrapped.kekVersion).toBe(2);
    expect(rewrapped.secretCiphertext!.equals(sealed.secretCiphertext!)).toBe(true);
    expect(rewrapped.wrappedDek!.equals(sealed.wrappedDek!)).toBe(false);
    expect(new Envelope(new Keyring([{ version: 2, key: v2 }])).open(binding, rewrapped).equals(secret)).toBe(true);
  });
});
