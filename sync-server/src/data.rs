//! The relay's data directory: its identity (created once and kept), its database, the
//! address devices dial, and the setup codes it hands out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rapport_wire::codes::SetupCode;
use rapport_wire::identity::Identity;
use rapport_wire::private;

use crate::store::{self, Store, Write, token_hash};

const KEY_FILE: &str = "identity.key";
const CERT_FILE: &str = "identity.crt";
const PUBLIC_ADDR: &str = "public_addr";

/// Data-directory failures, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// `init` on a directory that already holds a relay.
    #[error(
        "{0} already holds a relay identity; use `rapport-relay setup-code --data {0}` for another setup code"
    )]
    AlreadyInitialised(String),
    /// Anything but `init` on an empty directory.
    #[error("{0} holds no relay yet; run `rapport-relay init --data {0}` first")]
    NotInitialised(String),
    /// The identity files are damaged.
    #[error("the relay identity in {0} is damaged ({1}); restore it from a backup")]
    Damaged(String, String),
    /// Filesystem failure.
    #[error("cannot use {0}: {1}")]
    Io(String, std::io::Error),
    /// Database failure.
    #[error("the relay database failed: {0}")]
    Db(String),
}

/// An opened data directory.
pub struct DataDir {
    path: PathBuf,
    /// The relay's identity.
    pub identity: Identity,
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

impl DataDir {
    /// Creates the identity and database in `path` (which must not hold a relay yet).
    pub fn init(path: &Path, public_addr: &str) -> Result<DataDir, DataError> {
        if path.join(KEY_FILE).exists() {
            return Err(DataError::AlreadyInitialised(show(path)));
        }
        private::dir(path).map_err(|e| DataError::Io(show(path), e))?;
        let identity = Identity::generate("rapport-relay")
            .map_err(|e| DataError::Damaged(show(path), e.to_string()))?;
        // The certificate first: the key's presence is what says "initialised", and both
        // are durable (file and directory synced) before init reports success.
        // A certificate without its key is what an interrupted init leaves: start over.
        let _ = std::fs::remove_file(path.join(CERT_FILE));
        for (name, bytes) in [
            (CERT_FILE, identity.cert_der()),
            (KEY_FILE, identity.key_pkcs8()),
        ] {
            let file = path.join(name);
            private::write_new(&file, bytes).map_err(|e| DataError::Io(show(&file), e))?;
        }
        store::set_meta(path, PUBLIC_ADDR, public_addr)
            .map_err(|e| DataError::Db(e.to_string()))?;
        Ok(DataDir {
            path: path.to_path_buf(),
            identity,
        })
    }

    /// Opens an initialised data directory.
    pub fn open(path: &Path) -> Result<DataDir, DataError> {
        let read = |name: &str| std::fs::read(path.join(name));
        let (key, cert) = match (read(KEY_FILE), read(CERT_FILE)) {
            (Ok(key), Ok(cert)) => (key, cert),
            (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataError::NotInitialised(show(path)));
            }
            (Err(e), _) | (_, Err(e)) => return Err(DataError::Io(show(path), e)),
        };
        let identity = Identity::from_parts(key, cert)
            .map_err(|e| DataError::Damaged(show(path), e.to_string()))?;
        Ok(DataDir {
            path: path.to_path_buf(),
            identity,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the database.
    pub fn store(&self) -> Result<Arc<Store>, DataError> {
        Store::open(&self.path).map_err(|e| DataError::Db(e.to_string()))
    }

    /// The address put into setup and invite codes.
    pub fn public_addr(&self, store: &Store) -> String {
        store
            .meta(PUBLIC_ADDR)
            .ok()
            .flatten()
            .unwrap_or_else(|| default_public_addr(4433))
    }

    /// Changes the address put into codes.
    pub fn set_public_addr(&self, addr: &str) -> Result<(), DataError> {
        store::set_meta(&self.path, PUBLIC_ADDR, addr).map_err(|e| DataError::Db(e.to_string()))
    }

    /// Creates a one-time setup code valid for [`SETUP_CODE_TTL`].
    pub fn new_setup_code(&self, store: &Store) -> Result<SetupCode, DataError> {
        self.new_setup_code_for(store, SETUP_CODE_TTL)
    }

    /// Creates a one-time setup code that registers nothing after `ttl`.
    pub fn new_setup_code_for(
        &self,
        store: &Store,
        ttl: std::time::Duration,
    ) -> Result<SetupCode, DataError> {
        let token: [u8; 32] = rand::random();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        store
            .write_blocking(Write::AddSetupCode {
                token_hash: token_hash(&token),
                expires_at: store::now().saturating_add(ttl),
            })
            .map_err(|r| DataError::Db(r.message))?;
        Ok(SetupCode {
            addr: self.public_addr(store),
            fingerprint: self.identity.fingerprint(),
            token: token.to_vec(),
        })
    }
}

/// How long a setup code registers a practice, unless told otherwise.
pub const SETUP_CODE_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Revokes every setup code not used yet; returns how many.
pub fn revoke_setup_codes(store: &Store) -> Result<u64, DataError> {
    match store.write_blocking(Write::RevokeSetupCodes) {
        Ok(store::Written::Count(n)) => Ok(n),
        Ok(_) => Ok(0),
        Err(r) => Err(DataError::Db(r.message)),
    }
}

/// `host:port` with this machine's host name: what devices on the same network can dial.
pub fn default_public_addr(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{port}")
}
