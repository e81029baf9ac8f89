// The pipeline's token format, in Node.js: how the product's web app writes tokens the
// pipeline reads (and reads the ones the pipeline refreshes). See docs/security.md, "Token format".
//   node docs/token-vault.js encrypt <connectedAccountId>   (token on stdin, key in META_TOKEN_ENCRYPTION_KEY)
//   node docs/token-vault.js decrypt <connectedAccountId>   (stored value on stdin)
'use strict';
const crypto = require('crypto');

// AES-256-GCM with a 12-byte nonce and a 16-byte tag, nothing else: GCM also "works" with other
// nonce lengths and with tags as short as 4 bytes, which a forger can guess. With WebCrypto
// (browsers, Deno, workers) pass { name: 'AES-GCM', iv /* 12 bytes */, additionalData, tagLength: 128 }
// and check the lengths the same way before calling crypto.subtle.decrypt.
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

function keyId(key) {
  return crypto.createHash('sha256').update(key).digest('hex').slice(0, 8);
}

function encryptToken(token, connectedAccountId, keyBase64) {
  const key = Buffer.from(keyBase64, 'base64');
  if (key.length !== 32) throw new Error('META_TOKEN_ENCRYPTION_KEY must decode to 32 bytes');
  const nonce = crypto.randomBytes(NONCE_BYTES);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(connectedAccountId, 'utf8'));
  const sealed = Buffer.concat([cipher.update(token, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return ['v1', keyId(key), nonce.toString('base64'), sealed.toString('base64')].join(':');
}

function decryptToken(stored, connectedAccountId, keyBase64s) {
  const parts = stored.split(':');
  const [version, kid, nonceB64, sealedB64] = parts;
  if (version !== 'v1') throw new Error(`unknown token format ${version}`);
  if (parts.length !== 4) throw new Error('stored token is not v1:<key id>:<nonce>:<ciphertext and tag>');
  const key = keyBase64s.map((k) => Buffer.from(k, 'base64')).find((k) => keyId(k) === kid);
  if (!key) throw new Error(`no configured key has id ${kid}`);
  const nonce = Buffer.from(nonceB64, 'base64');
  const sealed = Buffer.from(sealedB64, 'base64');
  if (nonce.length !== NONCE_BYTES) throw new Error(`nonce must be ${NONCE_BYTES} bytes, not ${nonce.length}`);
  if (sealed.length < TAG_BYTES + 1) {
    throw new Error(`ciphertext must hold at least 1 byte and a ${TAG_BYTES}-byte tag, not ${sealed.length} bytes`);
  }
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(connectedAccountId, 'utf8'));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]).toString('utf8');
}

module.exports = { encryptToken, decryptToken, keyId };

if (require.main === module) {
  const [mode, accountId] = process.argv.slice(2);
  const input = require('fs').readFileSync(0, 'utf8').trim();
  const keys = [process.env.META_TOKEN_ENCRYPTION_KEY,
    ...(process.env.META_TOKEN_ENCRYPTION_OLD_KEYS || '').split(',').filter(Boolean)];
  process.stdout.write(mode === 'encrypt' ? encryptToken(input, accountId, keys[0]) : decryptToken(input, accountId, keys));
}
