//! The database's keys, kept outside it: in a key file beside the database (mode 0600), or
//! only in memory for a throwaway store. They encrypt the biometrics at rest
//! (XChaCha20-Poly1305, the associated data naming the row, so a blob moved to another
//! row or person no longer opens) and seal what decides: the audit log's head and the
//! people and settings rows (HMAC-SHA-256). Each key's two subkeys come from its secret by
//! HKDF-SHA-256. A key file also records that its database has been sealed, so a database
//! stripped of its anchor is never quietly sealed anew.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::canonical::feed;
use crate::error::{StoreError, StoreResult};

const NONCE_LEN: usize = 24;
const FORMAT: &str = "vouch-keys";

struct Key {
    id: u32,
    secret: [u8; 32],
    cipher: XChaCha20Poly1305,
    mac_key: [u8; 32],
}

impl Key {
    fn new(id: u32, secret: [u8; 32]) -> Self {
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(b"vouch keys v1"), &secret);
        let mut blob_key = [0u8; 32];
        let mut mac_key = [0u8; 32];
        hkdf.expand(b"biometrics at rest", &mut blob_key)
            .expect("32 bytes is a valid HKDF-SHA-256 length");
        hkdf.expand(b"seals", &mut mac_key)
            .expect("32 bytes is a valid HKDF-SHA-256 length");
        Self {
            id,
            secret,
            cipher: XChaCha20Poly1305::new(&blob_key.into()),
            mac_key,
        }
    }

    fn generate(id: u32) -> Self {
        Self::new(id, <[u8; 32]>::generate())
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.mac_key)
            .expect("HMAC takes a key of any length");
        feed(&mut |bytes| mac.update(bytes), parts);
        mac
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFileText {
    format: String,
    version: u32,
    current: u32,
    sealed: bool,
    keys: Vec<KeyText>,
}

#[derive(Serialize, Deserialize)]
struct KeyText {
    id: u32,
    secret: String,
}

pub struct Keys {
    /// `None` for a store that lives only in memory.
    path: Option<PathBuf>,
    keys: Vec<Key>,
    current: u32,
    sealed: bool,
}

/// Why a blob would not open: a wrong key, or a blob that was moved or altered.
#[derive(Debug)]
pub struct BlobRefused(pub String);

impl Keys {
    /// Where a database's key file lives: beside it.
    /// Whether `other` holds the same keys as these: two stores of one site, whose rows
    /// open and seal alike.
    pub fn same_keys(&self, other: &Keys) -> bool {
        self.current == other.current
            && self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.id == b.id && a.secret == b.secret)
    }

    pub fn path_for(db: &Path) -> PathBuf {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(".key");
        db.with_file_name(name)
    }

    /// A key that lives only as long as this process (for a store in memory).
    pub fn ephemeral() -> Self {
        Self {
            path: None,
            keys: vec![Key::generate(1)],
            current: 1,
            sealed: false,
        }
    }

    /// Reads the key file at `path`: `None` when there is none.
    pub fn load(path: &Path) -> StoreResult<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    source,
                    path: path.to_path_buf(),
                });
            }
        };
        refuse_open_permissions(path)?;
        let bad = |why: &str| StoreError::BadKeyFile {
            reason: why.to_string(),
            path: path.to_path_buf(),
        };
        let file: KeyFileText =
            serde_json::from_str(&text).map_err(|e| bad(&format!("not a Vouch key file: {e}")))?;
        if file.format != FORMAT || file.version != 1 {
            return Err(bad("not a version 1 Vouch key file"));
        }
        let keys = file
            .keys
            .iter()
            .map(|k| {
                let bytes = hex::decode(&k.secret).map_err(|_| bad("a secret is not hex"))?;
                let secret: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| bad("a secret is not 32 bytes"))?;
                Ok(Key::new(k.id, secret))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        if !keys.iter().any(|k| k.id == file.current) {
            return Err(bad("its current key is not in it"));
        }
        Ok(Some(Self {
            path: Some(path.to_path_buf()),
            keys,
            current: file.current,
            sealed: file.sealed,
        }))
    }

    /// A new key file at `path` (mode 0600), written before any data it protects.
    pub fn create(path: &Path) -> StoreResult<Self> {
        let keys = Self {
            path: Some(path.to_path_buf()),
            keys: vec![Key::generate(1)],
            current: 1,
            sealed: false,
        };
        keys.save()?;
        Ok(keys)
    }

    fn save(&self) -> StoreResult<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text = serde_json::to_string_pretty(&KeyFileText {
            format: FORMAT.into(),
            version: 1,
            current: self.current,
            sealed: self.sealed,
            keys: self
                .keys
                .iter()
                .map(|k| KeyText {
                    id: k.id,
                    secret: hex::encode(k.secret),
                })
                .collect(),
        })
        .expect("keys serialise");
        super::files::write_private(path, text.as_bytes())
    }

    /// Whether a database has been sealed with these keys.
    pub fn sealed(&self) -> bool {
        self.sealed
    }

    pub fn mark_sealed(&mut self) -> StoreResult<()> {
        if !self.sealed {
            self.sealed = true;
            self.save()?;
        }
        Ok(())
    }

    pub fn current_id(&self) -> u32 {
        self.current
    }

    fn key(&self, id: u32) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    fn current(&self) -> &Key {
        self.key(self.current).expect("the current key is present")
    }

    /// `nonce || ciphertext` of `plaintext` under the current key, with `aad` bound to it.
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = XNonce::generate();
        let ciphertext = self
            .current()
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length this store holds");
        let mut blob = nonce.to_vec();
        blob.extend(ciphertext);
        blob
    }

    pub fn decrypt(&self, key_id: u32, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, BlobRefused> {
        let key = self
            .key(key_id)
            .ok_or_else(|| BlobRefused(format!("key {key_id} is not in the key file")))?;
        if blob.len() < NONCE_LEN {
            return Err(BlobRefused("it is too short to be sealed".into()));
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).expect("split at the nonce length");
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| {
                BlobRefused(
                    "it does not open: altered, moved to another row, or another key".into(),
                )
            })
    }

    /// `key id:HMAC` over `parts` with the current key.
    pub fn seal(&self, parts: &[&[u8]]) -> String {
        let key = self.current();
        format!(
            "{}:{}",
            key.id,
            hex::encode(key.mac(parts).finalize().into_bytes())
        )
    }

    /// Whether `seal` is a seal of `parts` by one of these keys.
    pub fn check_seal(&self, parts: &[&[u8]], seal: &str) -> bool {
        let Some((id, mac)) = seal.split_once(':') else {
            return false;
        };
        let (Ok(id), Ok(mac)) = (id.parse::<u32>(), hex::decode(mac)) else {
            return false;
        };
        self.key(id)
            .is_some_and(|key| key.mac(parts).verify_slice(&mac).is_ok())
    }

    /// A new current key; the old ones stay until nothing uses them (`retire`).
    pub fn rotate(&mut self) -> StoreResult<u32> {
        let id = self.keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
        self.keys.push(Key::generate(id));
        self.current = id;
        self.save()?;
        Ok(id)
    }

    /// Drops every key but the current one (once nothing is encrypted or sealed by them).
    pub fn retire_old(&mut self) -> StoreResult<usize> {
        let before = self.keys.len();
        let current = self.current;
        self.keys.retain(|k| k.id == current);
        self.save()?;
        Ok(before - self.keys.len())
    }

    /// Ids of the keys other than the current one.
    pub fn old_ids(&self) -> Vec<u32> {
        self.keys
            .iter()
            .map(|k| k.id)
            .filter(|&id| id != self.current)
            .collect()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// A key file others can read is a key others have.
#[cfg(unix)]
fn refuse_open_permissions(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| StoreError::Io {
            source,
            path: path.to_path_buf(),
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::BadKeyFile {
            reason: format!(
                "others may read it (mode {:o}): run `chmod 600` on it",
                mode & 0o777
            ),
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_open_permissions(_path: &Path) -> StoreResult<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_opens_only_with_its_row_and_key() {
        let keys = Keys::ephemeral();
        let blob = keys.encrypt(b"template 7 of person 3", b"embedding");
        assert!(!blob.windows(9).any(|w| w == b"embedding"));
        let id = keys.current_id();
        assert_eq!(
            keys.decrypt(id, b"template 7 of person 3", &blob).unwrap(),
            b"embedding"
        );
        assert!(keys.decrypt(id, b"template 7 of person 4", &blob).is_err());
        let mut flipped = blob.clone();
        flipped[30] ^= 1;
        assert!(
            keys.decrypt(id, b"template 7 of person 3", &flipped)
                .is_err()
        );
        assert!(
            Keys::ephemeral()
                .decrypt(id, b"template 7 of person 3", &blob)
                .is_err()
        );
        assert!(keys.decrypt(id, b"x", &blob[..10]).is_err());
    }

    #[test]
    fn seals_tell_edits_and_survive_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vouch.db.key");
        let mut keys = Keys::create(&path).unwrap();
        let seal = keys.seal(&[b"bands.face", b"{\"low\":0.45}"]);
        assert!(keys.check_seal(&[b"bands.face", b"{\"low\":0.45}"], &seal));
        assert!(!keys.check_seal(&[b"bands.face", b"{\"low\":0.0}"], &seal));
        assert!(!keys.check_seal(&[b"bands.face", b"{\"low\":0.45}"], "1:00"));
        keys.rotate().unwrap();
        assert!(keys.check_seal(&[b"bands.face", b"{\"low\":0.45}"], &seal));
        let reloaded = Keys::load(&path).unwrap().unwrap();
        assert_eq!(reloaded.current_id(), 2);
        assert!(reloaded.check_seal(&[b"bands.face", b"{\"low\":0.45}"], &seal));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(Keys::load(&path).is_err());
        }
    }
}
