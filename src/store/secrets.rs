//! Secrets at rest: webhook URLs and `user_objectId`s are sealed with XChaCha20-Poly1305 before
//! they reach sled, bound to the record they belong to (the connection id is the associated
//! data), so grepping the data directory for a URL finds nothing.
//!
//! The key comes from `connect.secrets_key` (base64 of 32 bytes, usually `${ENV}`), or is
//! generated on first start into `<data_dir>/secrets.key` with mode 0600.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// The prefix of a sealed value, with the format's version.
const PREFIX: &str = "sealed:v1:";

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or written.
    #[error("cannot use the key file {path}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key is not base64 of 32 bytes.
    #[error("the secrets key is not base64 of 32 bytes")]
    BadKey,
    /// A sealed value did not open: another key, or damaged.
    #[error("a sealed secret does not open with this key (was the key changed?)")]
    Open,
}

/// The cipher for secrets at rest.
pub struct Cipher(XChaCha20Poly1305);

impl Cipher {
    /// The configured key, or the one in `<dir>/secrets.key`, created if absent.
    pub fn load(configured: Option<&str>, dir: &Path) -> Result<Self, SecretError> {
        let key = match configured {
            Some(k) => B64.decode(k.trim()).map_err(|_| SecretError::BadKey)?,
            None => Self::key_file(&dir.join("secrets.key"))?,
        };
        if key.len() != 32 {
            return Err(SecretError::BadKey);
        }
        Ok(Self(
            XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SecretError::BadKey)?,
        ))
    }

    /// The configured key alone (base64 of 32 bytes): a shared database has no data folder to
    /// keep a generated one in, and every instance must use the same key.
    pub fn from_key(configured: &str) -> Result<Self, SecretError> {
        let key = B64
            .decode(configured.trim())
            .map_err(|_| SecretError::BadKey)?;
        XChaCha20Poly1305::new_from_slice(&key)
            .map(Self)
            .map_err(|_| SecretError::BadKey)
    }

    fn key_file(path: &Path) -> Result<Vec<u8>, SecretError> {
        let err = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => B64.decode(text.trim()).map_err(|_| SecretError::BadKey),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options.open(path).map_err(err)?;
                std::io::Write::write_all(&mut f, B64.encode(&key).as_bytes()).map_err(err)?;
                f.sync_all().map_err(err)?;
                tracing::info!(path = %path.display(), "generated the key that encrypts webhook URLs at rest; back it up with the data");
                Ok(key)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Seals `plain` for the record `owner`.
    pub fn seal(&self, owner: &str, plain: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: owner.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message");
        let mut out = nonce.to_vec();
        out.extend(ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Opens what [`Cipher::seal`] sealed for `owner`.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<String, SecretError> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .filter(|r| r.len() > 24)
            .ok_or(SecretError::Open)?;
        let (nonce, ct) = raw.split_at(24);
        let plain = self
            .0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: owner.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain).map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_bound_to_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cipher::load(None, dir.path()).unwrap();
        let s = c.seal("con_a", "https://x.webhook.office.com/secret");
        assert!(!s.contains("secret"));
        assert_eq!(
            c.open("con_a", &s).unwrap(),
            "https://x.webhook.office.com/secret"
        );
        assert!(
            c.open("con_b", &s).is_err(),
            "a sealed value cannot be moved to another record"
        );
        // The generated key file is reused, and private.
        let again = Cipher::load(None, dir.path()).unwrap();
        assert_eq!(
            again.open("con_a", &s).unwrap(),
            "https://x.webhook.office.com/secret"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Cipher::load(Some("dG9vIHNob3J0"), dir.path()).is_err());
    }
}
