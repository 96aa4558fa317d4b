<?php

declare(strict_types=1);

namespace TaskGate;

/**
 * Mints user tokens for a TaskGate server in token mode (`--auth token`): JSON Web Tokens whose `sub` is the uid,
 * with `iat` and `exp` (and `iss`, `aud`, `kid` if you set them). The browser presents one as `?token=` (or
 * `Authorization: Bearer`), and TaskGate then lets it act as that uid only.
 *
 * - HS256, a secret shared with the server (`--token-secret`; at least 32 bytes, RFC 7518 §3.2):
 *   `TokenMinter::hs256($secret)->mint('alice', 900)`; HS384 and HS512 (`--token-algorithm`, 48 and 64 bytes) with
 *   `TokenMinter::hmac($secret, 'HS512')`.
 * - RS256, your private key; the server has the public key (`--token-key public.pem`):
 *   `TokenMinter::rs256(file_get_contents('private.pem'), keyId: 'public')->mint('alice', 900)`.
 *   A PEM key's `kid` on the server is its file's base name without extension ({@see keyIdFor()}); a token without
 *   `kid` is checked against the only key configured.
 *
 * Mint a token after your own login check, for the logged-in user only, and keep lifetimes short.
 */
final class TokenMinter
{
    /** What the server accepts as a uid. */
    public const UID_PATTERN = '/^[A-Za-z0-9._:@-]{1,128}$/D';
    /** HMAC algorithms: the hash and the shortest secret (RFC 7518 §3.2: as long as the hash; the server says so too). */
    private const HMAC = ['HS256' => ['sha256', 32], 'HS384' => ['sha384', 48], 'HS512' => ['sha512', 64]];
    /** Smallest RSA key this class signs with. */
    public const MIN_RSA_BITS = 2048;
    /** Claims set from mint()'s parameters and the constructor, not through `$claims`. */
    private const OWN_CLAIMS = ['sub', 'iat', 'exp', 'iss', 'aud'];

    /**
     * @param string|list<string>|null $audience
     */
    private function __construct(
        private readonly string $algorithm,
        #[\SensitiveParameter] private readonly string|\OpenSSLAsymmetricKey $key,
        private readonly ?string $keyId,
        private readonly ?string $issuer,
        private readonly string|array|null $audience,
    ) {
        if ($keyId !== null && ($keyId === '' || preg_match('/[\x00-\x1f\x7f]/', $keyId))) {
            throw new \InvalidArgumentException('keyId must be a non-empty string without control characters');
        }
        if ($issuer !== null && $issuer === '') {
            throw new \InvalidArgumentException('issuer must not be empty (null for none)');
        }
        if (is_array($audience)) {
            if ($audience === [] || !array_is_list($audience)) {
                throw new \InvalidArgumentException('audience must be a string or a non-empty list of strings');
            }
            foreach ($audience as $one) {
                if (!is_string($one) || $one === '') {
                    throw new \InvalidArgumentException('audience must be a string or a non-empty list of strings');
                }
            }
        } elseif ($audience === '') {
            throw new \InvalidArgumentException('audience must not be empty (null for none)');
        }
    }

    /**
     * HMAC-SHA256 with the secret the server has as `--token-secret` (or `$TASKGATE_TOKEN_SECRET`); at least 32 bytes.
     *
     * @param string|list<string>|null $audience `aud` claim
     */
    public static function hs256(
        #[\SensitiveParameter] string $secret,
        ?string $issuer = null,
        string|array|null $audience = null,
        ?string $keyId = null,
    ): self {
        return self::hmac($secret, 'HS256', $issuer, $audience, $keyId);
    }

    /**
     * HMAC with the shared secret: HS256, HS384 or HS512 (the server's `--token-algorithm`); the secret must have at
     * least as many bytes as the hash (32, 48, 64).
     *
     * @param string|list<string>|null $audience `aud` claim
     */
    public static function hmac(
        #[\SensitiveParameter] string $secret,
        string $algorithm = 'HS256',
        ?string $issuer = null,
        string|array|null $audience = null,
        ?string $keyId = null,
    ): self {
        $algorithm = strtoupper($algorithm);
        if (!isset(self::HMAC[$algorithm])) {
            throw new \InvalidArgumentException('algorithm must be HS256, HS384 or HS512');
        }
        $minimum = self::HMAC[$algorithm][1];
        if (strlen($secret) < $minimum) {
            throw new \InvalidArgumentException("a secret for $algorithm must have at least $minimum bytes (RFC 7518 §3.2)");
        }
        return new self($algorithm, $secret, $keyId, $issuer, $audience);
    }

    /**
     * RSA PKCS#1 v1.5 with SHA-256 (needs the openssl extension); the server checks with the public key.
     *
     * @param string|\OpenSSLAsymmetricKey $privateKey PEM text (`-----BEGIN PRIVATE KEY-----` or `RSA PRIVATE KEY`),
     *                                                 the path of a PEM file, or a key from openssl_pkey_get_private()
     * @param string|null                  $keyId      `kid` header: the server's name of the public key (for a PEM
     *                                                 file, its base name without extension); null: no `kid`
     * @param string|list<string>|null     $audience   `aud` claim
     */
    public static function rs256(
        #[\SensitiveParameter] string|\OpenSSLAsymmetricKey $privateKey,
        ?string $keyId = null,
        ?string $issuer = null,
        string|array|null $audience = null,
        #[\SensitiveParameter] ?string $passphrase = null,
    ): self {
        if (!extension_loaded('openssl')) {
            throw new \LogicException('RS256 needs the openssl extension');
        }
        if (is_string($privateKey)) {
            if (!str_contains($privateKey, '-----BEGIN')) {
                if (!is_file($privateKey) || !is_readable($privateKey)) {
                    throw new \InvalidArgumentException('privateKey is neither PEM text nor a readable file');
                }
                $privateKey = (string) file_get_contents($privateKey);
            }
            $key = openssl_pkey_get_private($privateKey, $passphrase);
            if ($key === false) {
                throw new \InvalidArgumentException('not a usable private key: ' . self::opensslErrors());
            }
        } else {
            $key = $privateKey;
        }
        $details = openssl_pkey_get_details($key);
        if ($details === false || ($details['type'] ?? null) !== OPENSSL_KEYTYPE_RSA) {
            throw new \InvalidArgumentException('RS256 needs an RSA private key');
        }
        if (($details['bits'] ?? 0) < self::MIN_RSA_BITS) {
            throw new \InvalidArgumentException('RSA key must have at least ' . self::MIN_RSA_BITS . ' bits');
        }
        return new self('RS256', $key, $keyId, $issuer, $audience);
    }

    /** The `kid` TaskGate gives a PEM key file: its base name without extension (`keys/web-2026.pem` → `web-2026`). */
    public static function keyIdFor(string $publicKeyPath): string
    {
        return pathinfo($publicKeyPath, PATHINFO_FILENAME);
    }

    public function algorithm(): string
    {
        return $this->algorithm;
    }

    /**
     * A token for `$uid`, valid for `$ttlSeconds` from `$now` (default: the current time).
     *
     * @param array<string, mixed> $claims more claims (e.g. `nbf`); not `sub`, `iat`, `exp`, `iss` or `aud`
     */
    public function mint(string $uid, int $ttlSeconds = 3600, array $claims = [], ?int $now = null): string
    {
        if (!preg_match(self::UID_PATTERN, $uid)) {
            throw new \InvalidArgumentException('uid must be 1-128 characters of A-Z a-z 0-9 . _ : @ -');
        }
        if ($ttlSeconds < 1) {
            throw new \InvalidArgumentException('ttlSeconds must be at least 1');
        }
        $reserved = array_intersect(array_keys($claims), self::OWN_CLAIMS);
        if ($reserved !== []) {
            throw new \InvalidArgumentException('set ' . implode(', ', $reserved) . ' through mint() and the constructor, not $claims');
        }
        $now ??= time();
        $payload = ['sub' => $uid, 'iat' => $now, 'exp' => $now + $ttlSeconds];
        if ($this->issuer !== null) {
            $payload['iss'] = $this->issuer;
        }
        if ($this->audience !== null) {
            $payload['aud'] = $this->audience;
        }
        $payload += $claims;
        $header = ['alg' => $this->algorithm, 'typ' => 'JWT'];
        if ($this->keyId !== null) {
            $header['kid'] = $this->keyId;
        }
        $input = self::base64Url(self::json($header)) . '.' . self::base64Url(self::json($payload));
        return $input . '.' . self::base64Url($this->sign($input));
    }

    private function sign(string $input): string
    {
        if (isset(self::HMAC[$this->algorithm])) {
            return hash_hmac(self::HMAC[$this->algorithm][0], $input, (string) $this->key, true);
        }
        $signature = '';
        if (!openssl_sign($input, $signature, $this->key, OPENSSL_ALGO_SHA256)) {
            throw new \RuntimeException('openssl_sign failed: ' . self::opensslErrors());
        }
        return $signature;
    }

    /** base64url without padding, as JWTs use it. */
    public static function base64Url(string $bytes): string
    {
        return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
    }

    private static function json(array $value): string
    {
        return json_encode($value, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    }

    private static function opensslErrors(): string
    {
        $errors = [];
        while (($error = openssl_error_string()) !== false) {
            $errors[] = $error;
        }
        return $errors === [] ? 'unknown error' : implode('; ', $errors);
    }

    public function __debugInfo(): array
    {
        return ['algorithm' => $this->algorithm, 'keyId' => $this->keyId, 'issuer' => $this->issuer, 'audience' => $this->audience];
    }
}
