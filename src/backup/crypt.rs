//! The backup's encryption: a key from a passphrase or key file (argon2id), and the STREAM
//! construction (XChaCha20-Poly1305 in 64 KiB chunks, `chacha20poly1305::aead::stream`) so a
//! file of any size is sealed and opened in constant memory.
//!
//! An encrypted file is a fixed header followed by the sealed chunks. The header says how the
//! key was derived (never the key), which part of the backup the file is (data or manifest), and
//! the stream's nonce prefix; every chunk carries the whole header as associated data, so a
//! changed header, a swapped chunk, a reordered chunk or a cut tail (STREAM marks the last
//! chunk) all fail to open.

use std::io::{self, Read, Write};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Plaintext bytes per sealed chunk.
pub const CHUNK: usize = 64 * 1024;
/// Poly1305 tag added to every chunk.
const TAG: usize = 16;
const MAGIC: &[u8; 8] = b"MXBKUP\0\x01";
const SALT: usize = 16;
const NONCE_PREFIX: usize = 19;
/// magic, source, role, salt, three argon2 parameters, nonce prefix.
pub const HEADER_LEN: usize = 8 + 1 + 1 + SALT + 12 + NONCE_PREFIX;

/// argon2id cost for new backups: 64 MiB, 3 passes (OWASP's recommendation is 19 MiB, 2).
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
/// Refused when read from a header, which is read before anything is authenticated: a crafted
/// backup must not make `verify` allocate a gigabyte or spin for minutes. Four times the
/// memory, and a little over twice the passes, of what this version writes.
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 8;
const MAX_P_COST: u32 = 4;
// What this version writes, it must read.
const _: () = assert!(M_COST_KIB <= MAX_M_COST_KIB && T_COST <= MAX_T_COST && P_COST <= MAX_P_COST);

/// Where the backup key comes from. Both are secrets: never printed, zeroized on drop.
pub enum KeySource {
    Passphrase(SecretSlice<u8>),
    KeyFile(SecretSlice<u8>),
}

impl KeySource {
    fn code(&self) -> u8 {
        match self {
            KeySource::Passphrase(_) => 1,
            KeySource::KeyFile(_) => 2,
        }
    }
    fn secret(&self) -> &[u8] {
        match self {
            KeySource::Passphrase(s) | KeySource::KeyFile(s) => s.expose_secret(),
        }
    }
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Passphrase(_) => f.write_str("KeySource::Passphrase([REDACTED])"),
            KeySource::KeyFile(_) => f.write_str("KeySource::KeyFile([REDACTED])"),
        }
    }
}

/// Which part of a backup an encrypted file is; bound into every chunk, so the data cannot be
/// passed off as the manifest or the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Data = 1,
    Manifest = 2,
}

/// How a backup's key was derived: the same for both of its files.
#[derive(Clone, PartialEq, Eq)]
pub struct KdfParams {
    source: u8,
    salt: [u8; SALT],
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
}

/// The derived 256-bit backup key.
pub struct BackupKey {
    key: Zeroizing<[u8; 32]>,
    params: KdfParams,
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey([REDACTED])")
    }
}

impl BackupKey {
    /// A key for a new backup: fresh salt, current cost.
    pub fn derive_new(source: &KeySource) -> Result<BackupKey> {
        let mut salt = [0u8; SALT];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let params = KdfParams {
            source: source.code(),
            salt,
            m_cost: M_COST_KIB,
            t_cost: T_COST,
            p_cost: P_COST,
        };
        derive(source, params)
    }

    /// The key an existing backup was made with, from its manifest's header.
    pub fn derive_for(source: &KeySource, header: &[u8; HEADER_LEN]) -> Result<BackupKey> {
        let parsed = Header::parse(header)?;
        if parsed.kdf.source != source.code() {
            return Err(damaged(match parsed.kdf.source {
                1 => "this backup was made with a passphrase, not a key file",
                _ => "this backup was made with a key file (--key-file), not a passphrase",
            }));
        }
        derive(source, parsed.kdf)
    }

    /// A header for a new file of `role` under this key, with a fresh nonce prefix.
    pub fn new_header(&self, role: Role) -> [u8; HEADER_LEN] {
        let mut prefix = [0u8; NONCE_PREFIX];
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        Header {
            kdf: self.params.clone(),
            role: role as u8,
            prefix,
        }
        .encode()
    }
}

fn derive(source: &KeySource, kdf: KdfParams) -> Result<BackupKey> {
    // argon2's error is no `std::error::Error` (its `std` feature is off): its text is kept.
    let params = Params::new(kdf.m_cost, kdf.t_cost, kdf.p_cost, Some(32)).map_err(|e| {
        damaged(&format!("unusable key-derivation parameters ({e})")).because(e.to_string())
    })?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(source.secret(), &kdf.salt, key.as_mut())
        .map_err(|e| {
            Error::BadRequest(format!("backup: cannot derive the key: {e}")).because(e.to_string())
        })?;
    Ok(BackupKey { key, params: kdf })
}

fn damaged(what: &str) -> Error {
    Error::BadRequest(format!("backup: {what}"))
}

struct Header {
    kdf: KdfParams,
    role: u8,
    prefix: [u8; NONCE_PREFIX],
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(MAGIC);
        put(&[self.kdf.source, self.role]);
        put(&self.kdf.salt);
        put(&self.kdf.m_cost.to_le_bytes());
        put(&self.kdf.t_cost.to_le_bytes());
        put(&self.kdf.p_cost.to_le_bytes());
        put(&self.prefix);
        out
    }

    fn parse(h: &[u8; HEADER_LEN]) -> Result<Header> {
        if &h[..8] != MAGIC {
            return Err(damaged(
                "not a Maestra backup file (or an unsupported version of one)",
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let mut salt = [0u8; SALT];
        salt.copy_from_slice(&h[10..10 + SALT]);
        let at = 10 + SALT;
        let kdf = KdfParams {
            source: h[8],
            salt,
            m_cost: u32_at(at),
            t_cost: u32_at(at + 4),
            p_cost: u32_at(at + 8),
        };
        if !(1..=2).contains(&kdf.source)
            || kdf.m_cost > MAX_M_COST_KIB
            || kdf.t_cost > MAX_T_COST
            || kdf.p_cost > MAX_P_COST
        {
            return Err(damaged("the file's header is damaged"));
        }
        let mut prefix = [0u8; NONCE_PREFIX];
        prefix.copy_from_slice(&h[at + 12..]);
        Ok(Header {
            kdf,
            role: h[9],
            prefix,
        })
    }
}

/// Seals everything written to it onto `inner`; [`SealWriter::finish`] writes the last chunk.
pub struct SealWriter<W: Write> {
    inner: W,
    header: [u8; HEADER_LEN],
    stream: Option<EncryptorBE32<XChaCha20Poly1305>>,
    /// Plaintext waiting to be sealed: may hold key files (`--with-keys`), so zeroed on drop.
    buf: Zeroizing<Vec<u8>>,
}

impl<W: Write> SealWriter<W> {
    pub fn new(key: &BackupKey, role: Role, mut inner: W) -> Result<SealWriter<W>> {
        let header = key.new_header(role);
        let parsed = Header::parse(&header)?;
        inner
            .write_all(&header)
            .map_err(|e| Error::io("cannot write the backup", e))?;
        let aead = XChaCha20Poly1305::new(key.key.as_ref().into());
        let stream = EncryptorBE32::from_aead(aead, parsed.prefix.as_ref().into());
        Ok(SealWriter {
            inner,
            header,
            stream: Some(stream),
            buf: Zeroizing::new(Vec::with_capacity(CHUNK)),
        })
    }

    /// Seals the last chunk and returns the inner writer (not flushed to disk: the caller
    /// decides how durable it must be).
    pub fn finish(mut self) -> Result<W> {
        let stream = self
            .stream
            .take()
            .ok_or_else(|| damaged("the stream was already finished"))?;
        let sealed = stream
            .encrypt_last(Payload {
                msg: &self.buf,
                aad: &self.header,
            })
            // aead's error is opaque by design: there is no cause to keep.
            .map_err(|_| damaged("encryption failed"))?;
        self.inner
            .write_all(&sealed)
            .map_err(|e| Error::io("cannot write the backup", e))?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == CHUNK && !data.is_empty() {
            // A full chunk is sealed only once more follows: the last one is sealed as last.
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| io::Error::other("stream finished"))?;
            let sealed = stream
                .encrypt_next(Payload {
                    msg: &self.buf,
                    aad: &self.header,
                })
                // aead's error is opaque by design: there is no cause to keep.
                .map_err(|_| io::Error::other("encryption failed"))?;
            self.inner.write_all(&sealed)?;
            self.buf.clear();
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the header of an encrypted file: what [`BackupKey::derive_for`] needs.
pub fn read_header(r: &mut impl Read) -> Result<[u8; HEADER_LEN]> {
    let mut header = [0u8; HEADER_LEN];
    let n = read_full(r, &mut header).map_err(|e| Error::io("cannot read the backup", e))?;
    if n < HEADER_LEN {
        return Err(damaged(
            "a backup file is truncated (shorter than its header)",
        ));
    }
    Ok(header)
}

/// Opens a sealed stream: yields the plaintext, and fails with a clear error on any change,
/// on a cut tail, or under the wrong key.
pub struct OpenReader<R: Read> {
    inner: R,
    header: [u8; HEADER_LEN],
    stream: Option<DecryptorBE32<XChaCha20Poly1305>>,
    /// The next sealed chunk, read ahead to learn whether the current one is the last.
    ahead: Vec<u8>,
    /// The opened chunk: may hold key files, so zeroed when replaced or dropped.
    plain: Zeroizing<Vec<u8>>,
    at: usize,
    /// Whether the first chunk opened: until then a failure most likely means a wrong key.
    opened_one: bool,
}

impl<R: Read> OpenReader<R> {
    /// `header` was read from `inner` with [`read_header`]; the key must match its salt.
    pub fn new(
        key: &BackupKey,
        role: Role,
        header: [u8; HEADER_LEN],
        mut inner: R,
    ) -> Result<OpenReader<R>> {
        let parsed = Header::parse(&header)?;
        if parsed.kdf != key.params {
            return Err(damaged(
                "the data file does not belong to this manifest (another backup's key)",
            ));
        }
        if parsed.role != role as u8 {
            return Err(damaged(
                "a backup file is in the wrong place (data and manifest swapped)",
            ));
        }
        let aead = XChaCha20Poly1305::new(key.key.as_ref().into());
        let stream = DecryptorBE32::from_aead(aead, parsed.prefix.as_ref().into());
        let mut ahead = vec![0u8; CHUNK + TAG];
        let n = read_full(&mut inner, &mut ahead)
            .map_err(|e| Error::io("cannot read the backup", e))?;
        ahead.truncate(n);
        Ok(OpenReader {
            inner,
            header,
            stream: Some(stream),
            ahead,
            plain: Zeroizing::new(Vec::new()),
            at: 0,
            opened_one: false,
        })
    }

    fn refill(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let current = std::mem::take(&mut self.ahead);
        let mut next = vec![0u8; CHUNK + TAG];
        let n = read_full(&mut self.inner, &mut next)?;
        next.truncate(n);
        let failed = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                if self.opened_one {
                    "the backup is corrupted or truncated (a chunk does not authenticate)"
                } else {
                    "cannot decrypt: wrong passphrase or key file, or the backup is corrupted"
                },
            )
        };
        let header = self.header;
        let payload = || Payload {
            msg: &current,
            aad: &header,
        };
        self.plain = Zeroizing::new(if next.is_empty() {
            // The input ends here. A chunk that opens as a middle one means the end was cut
            // off exactly at a chunk boundary (a failed attempt does not advance the stream).
            if stream.decrypt_next(payload()).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the backup is truncated (it ends before its last chunk)",
                ));
            }
            let stream = self.stream.take().ok_or_else(failed)?;
            // A failed decryption must not say why (aead's error is opaque anyway): no cause kept.
            stream.decrypt_last(payload()).map_err(|_| failed())?
        } else {
            stream.decrypt_next(payload()).map_err(|_| failed())?
        });
        self.opened_one = true;
        self.ahead = next;
        self.at = 0;
        Ok(())
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.plain.len() {
            if self.stream.is_none() {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = out.len().min(self.plain.len() - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (KeySource, BackupKey) {
        let src = KeySource::Passphrase(SecretSlice::from(b"correct horse".to_vec()));
        let k = BackupKey::derive_new(&src).unwrap();
        (src, k)
    }

    fn seal(k: &BackupKey, data: &[u8]) -> Vec<u8> {
        let mut w = SealWriter::new(k, Role::Data, Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn open(src: &KeySource, sealed: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let mut r = sealed;
        let header = read_header(&mut r).map_err(|e| e.to_string())?;
        let k = BackupKey::derive_for(src, &header).map_err(|e| e.to_string())?;
        let mut reader = OpenReader::new(&k, Role::Data, header, r).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn round_trips_every_length_around_chunk_edges() {
        let (src, k) = key();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&k, &data);
            assert_eq!(open(&src, &sealed).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn refuses_truncation_corruption_and_wrong_key() {
        let (src, k) = key();
        let data = vec![7u8; 2 * CHUNK];
        let sealed = seal(&k, &data);
        // Cut exactly at a chunk boundary: STREAM's last-chunk flag catches it.
        let cut = &sealed[..HEADER_LEN + CHUNK + TAG];
        assert!(open(&src, cut).unwrap_err().contains("truncated"));
        // Cut inside a chunk.
        let short = &sealed[..sealed.len() - 5];
        assert!(
            open(&src, short)
                .unwrap_err()
                .contains("corrupted or truncated")
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open(&src, &flipped).is_err());
        let mut header_changed = sealed.clone();
        header_changed[HEADER_LEN - 1] ^= 1;
        assert!(open(&src, &header_changed).is_err());
        let wrong = KeySource::Passphrase(SecretSlice::from(b"wrong".to_vec()));
        assert!(
            open(&wrong, &sealed)
                .unwrap_err()
                .contains("wrong passphrase")
        );
        let file = KeySource::KeyFile(SecretSlice::from(b"correct horse".to_vec()));
        assert!(open(&file, &sealed).unwrap_err().contains("passphrase"));
        assert!(format!("{src:?}{k:?}").contains("REDACTED"));
    }

    /// The header is read before anything is authenticated: costs above the caps are refused
    /// before any key derivation starts, the caps themselves accepted.
    #[test]
    fn key_derivation_costs_from_a_header_are_capped() {
        let (src, k) = key();
        let header = k.new_header(Role::Data);
        let at = 10 + SALT;
        let with = |offset: usize, value: u32| {
            let mut h = header;
            h[at + offset..at + offset + 4].copy_from_slice(&value.to_le_bytes());
            h
        };
        for (offset, over) in [
            (0, MAX_M_COST_KIB + 1),
            (0, 1024 * 1024),
            (4, MAX_T_COST + 1),
            (8, MAX_P_COST + 1),
        ] {
            let err = BackupKey::derive_for(&src, &with(offset, over)).unwrap_err();
            assert!(err.to_string().contains("header is damaged"), "{err}");
        }
        assert!(Header::parse(&with(0, MAX_M_COST_KIB)).is_ok());
        assert!(Header::parse(&with(4, MAX_T_COST)).is_ok());
        assert!(Header::parse(&with(8, MAX_P_COST)).is_ok());
    }
}
