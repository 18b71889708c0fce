#!/usr/bin/env python3
"""Restore one file of a kmdr backup without kmdr (see "Recovering without kmdr"
in docs/design.md). Needs: pip install pynacl argon2-cffi zstandard

usage: recover-without-kmdr.py REPO_DIR KEY_FILE BACKUP_ID|latest OUT [FILE_NAME]

REPO_DIR is a local copy of the repository (for S3: `aws s3 sync
s3://bucket/prefix REPO_DIR`). FILE_NAME defaults to snapshot.db. Every object
is checked (sha256, AEAD, chunk id, sizes) and the output's sha256 is compared
with the manifest; any mismatch stops with an error and exit status 1, and
OUT is then not created (OUT.partial is left for inspection).
"""
import hashlib, hmac, json, os, re, sys

import argon2.low_level
import nacl.bindings
import zstandard

KIND_CHUNK, KIND_MANIFEST = 1, 2
BACKUP_ID = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[a-z0-9-]+-[0-9a-fA-F]+")


def fail(msg):
    sys.exit(f"error: {msg}")


def unwrap_master_key(repo, secret):
    """Try every keys/<id> object; return the wrapped key material: format 1's
    64 bytes (enc || mac), or format 2's 2, 1, mac, X25519 secret [, enc]."""
    for name in sorted(os.listdir(os.path.join(repo, "keys"))):
        if name.startswith("."):
            continue  # a local store's temp file
        ko = json.load(open(os.path.join(repo, "keys", name)))
        kdf = ko["kdf"]
        if kdf["algorithm"] != "argon2id" or ko["cipher"] != "xchacha20poly1305":
            continue
        kek = argon2.low_level.hash_secret_raw(
            secret, bytes.fromhex(kdf["salt"]), time_cost=kdf["t_cost"],
            memory_cost=kdf["m_cost_kib"], parallelism=kdf["p_cost"], hash_len=32,
            type=argon2.low_level.Type.ID, version=19)
        try:
            master = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                bytes.fromhex(ko["wrapped_master_key"]), None, bytes.fromhex(ko["nonce"]), kek)
        except Exception:
            continue  # this key object wraps the master key under another secret
        if len(master) == 64 or (len(master) in (66, 98) and master[:2] == b"\x02\x01"):
            return master
        if len(master) == 66 and master[:2] == b"\x02\x02":
            fail("the key file is a write-only key: it cannot read; use the repository's full key")
    fail("the key file opens none of the key objects in keys/")


def hkdf_sha256(salt, ikm, info):
    """RFC 5869 HKDF-SHA256, 32 bytes of output (one block)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


class Keys:
    """What opens objects: format 1's key, and format 2's recipient secret."""

    def __init__(self, material):
        if len(material) == 64:
            self.enc, self.mac, self.x_secret = material[:32], material[32:], None
        else:
            self.mac, self.x_secret = material[2:34], material[34:66]
            self.enc = material[66:98] or None
            self.x_public = nacl.bindings.crypto_scalarmult_base(self.x_secret)
            self.auth = hmac.new(self.mac, b"kmdr object auth v2", hashlib.sha256).digest()

    def object_key(self, key, header):
        """The AEAD key of an object with this header (section 3)."""
        if header[4] == 1 and self.enc:
            return self.enc
        if header[4] == 2 and self.x_secret:
            ephemeral = header[32:64]
            shared = nacl.bindings.crypto_scalarmult(self.x_secret, ephemeral)
            if shared == bytes(32):
                fail(f"{key}: degenerate ephemeral key")
            return hkdf_sha256(ephemeral + self.x_public, shared + self.auth, b"kmdr object v2")
        fail(f"{key}: object version {header[4]} cannot be opened with this key")


def open_sealed(repo, key, kind, keys):
    """Read the sealed object stored under `key` and return its plaintext."""
    data = open(os.path.join(repo, *key.split("/")), "rb").read()
    if len(data) < 32 + 16 + 32:
        fail(f"{key}: truncated")
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        fail(f"{key}: trailing sha256 mismatch (the stored bytes changed)")
    if data[:4] != b"KMDR" or data[4] not in (1, 2) or data[5] != kind:
        fail(f"{key}: not a kmdr object of kind {kind} (version 1 or 2)")
    header = data[:32] if data[4] == 1 else data[:64]
    try:
        body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            data[len(header):-32], header + key.encode(), header[8:32], keys.object_key(key, header))
    except Exception:
        fail(f"{key}: authentication failed (wrong key, tampered or renamed object)")
    if header[6] == 0:
        return body
    if header[6] == 1:
        return zstandard.ZstdDecompressor().decompress(body)
    fail(f"{key}: unknown compression {header[6]}")


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    repo, key_file, backup, out = sys.argv[1:5]
    file_name = sys.argv[5] if len(sys.argv) == 6 else "snapshot.db"

    config = json.load(open(os.path.join(repo, "config")))
    if config["format"] not in (1, 2):
        fail(f"repository format {config['format']}; this script reads formats 1 and 2")
    # The secret is the key file's bytes without trailing ASCII whitespace.
    secret = open(key_file, "rb").read().rstrip(b" \t\n\r\x0c")
    keys = Keys(unwrap_master_key(repo, secret))

    if backup == "latest":  # backup ids sort by time
        names = [n for n in os.listdir(os.path.join(repo, "backups")) if BACKUP_ID.fullmatch(n)]
        if not names:
            fail("no backups")
        backup = max(names)
    manifest = json.loads(open_sealed(repo, f"backups/{backup}", KIND_MANIFEST, keys))
    if manifest["id"] != backup:
        fail(f"manifest backups/{backup} names backup {manifest['id']}")
    entry = next((f for f in manifest["files"] if f["name"] == file_name), None)
    if entry is None:
        fail(f"backup {backup} has no file {file_name}")

    total = hashlib.sha256()
    size = 0
    with open(out + ".partial", "wb") as w:
        for c in entry["chunks"]:
            key = f"data/{c['id'][:2]}/{c['id']}"
            plain = open_sealed(repo, key, KIND_CHUNK, keys)
            if hmac.new(keys.mac, plain, hashlib.sha256).hexdigest() != c["id"]:
                fail(f"{key}: content does not match its id")
            if len(plain) != c["len"]:
                fail(f"{key}: {len(plain)} bytes, the manifest says {c['len']}")
            w.write(plain)
            total.update(plain)
            size += len(plain)
    if size != entry["size"] or total.hexdigest() != entry["sha256"]:
        fail(f"restored {size} bytes sha256 {total.hexdigest()}, manifest says {entry['size']} {entry['sha256']}")
    os.replace(out + ".partial", out)
    print(f"{backup} {file_name}: {size} bytes in {len(entry['chunks'])} chunks, sha256 {entry['sha256']} OK -> {out}")


if __name__ == "__main__":
    main()
