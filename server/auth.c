/*
 * auth.c — device tokens and user passwords, all through libsodium.
 *
 * A device token is "fs1_" followed by the 43-character unpadded base64url text of 32 bytes
 * from randombytes_buf: 256 bits, so it needs no slow hash. The server stores only its
 * BLAKE2b-256 hash (crypto_generichash) and compares hashes with sodium_memcmp, in constant
 * time; a stolen database does not yield working tokens. The "fs1_" prefix versions the format
 * and lets secret scanners recognise a leaked token.
 *
 * Passwords (for the supervisor web page of a later issue) are low-entropy, so they get
 * crypto_pwhash_str: argon2id with the "interactive" limits, self-describing text output.
 *
 * Nothing here logs a token or a password.
 */
#include "server.h"

#include <sodium.h>
#include <string.h>

int auth_init(void)
{
    return sodium_init() < 0 ? FS_EIO : 0;
}

void auth_token_hash(const char *token, size_t len, uint8_t hash[SRV_TOKEN_HASH_LEN])
{
    crypto_generichash(hash, SRV_TOKEN_HASH_LEN, (const unsigned char *)token, len, NULL, 0);
}

int auth_token_new(char *buf, uint8_t hash[SRV_TOKEN_HASH_LEN])
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof raw);
    memcpy(buf, SRV_TOKEN_PREFIX, 4);
    /* 32 bytes -> 43 chars + NUL */
    if (!sodium_bin2base64(buf + 4, SRV_TOKEN_LEN + 1 - 4, raw, sizeof raw,
                           sodium_base64_VARIANT_URLSAFE_NO_PADDING)) {
        sodium_memzero(raw, sizeof raw);
        return FS_EIO;
    }
    sodium_memzero(raw, sizeof raw);
    auth_token_hash(buf, SRV_TOKEN_LEN, hash);
    return 0;
}

bool auth_token_check(const char *token, size_t len, const uint8_t expected[SRV_TOKEN_HASH_LEN])
{
    uint8_t h[SRV_TOKEN_HASH_LEN];
    /* hash whatever came so that a malformed token costs the same as a wrong one */
    auth_token_hash(token, len, h);
    bool form = len == SRV_TOKEN_LEN && memcmp(token, SRV_TOKEN_PREFIX, 4) == 0;
    bool same = sodium_memcmp(h, expected, SRV_TOKEN_HASH_LEN) == 0;
    return form & same;
}

int auth_password_hash(const char *password, size_t len, char *out, size_t cap)
{
    if (cap < crypto_pwhash_STRBYTES)
        return FS_EINVAL;
    if (crypto_pwhash_str(out, password, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return FS_ENOMEM;
    return 0;
}

bool auth_password_check(const char *stored, const char *password, size_t len)
{
    return crypto_pwhash_str_verify(stored, password, len) == 0;
}
