//! The node's libp2p identity: an Ed25519 keypair created once and kept in the data dir.
//!
//! The file is `<data_dir>/p2p_identity.key`, holding the keypair in libp2p's protobuf
//! encoding ([`Keypair::to_protobuf_encoding`], the `PrivateKey` message of the
//! [peer-ids spec]), mode `0600`. It is created atomically: written to a temporary file in
//! the same directory, fsynced, then renamed over the final name, so a crash never leaves a
//! half-written key. A file that exists but does not decode is an error naming the file; it
//! is never replaced silently (that would change the peer ID the fleet knows).
//!
//! [peer-ids spec]: https://github.com/libp2p/specs/blob/master/peer-ids/peer-ids.md

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// File name of the identity inside the data dir.
pub const IDENTITY_FILE: &str = "p2p_identity.key";

/// Errors loading or creating the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading, writing or renaming the file failed.
    #[error("p2p identity {path}: {source}")]
    Io {
        /// The file (or temporary file) involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists but is not a valid protobuf-encoded keypair.
    #[error(
        "p2p identity {path} is corrupt ({reason}); it was left untouched: restore it from a backup, or delete it to create a new identity (the node's peer ID will change)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// Encoding the new keypair failed (not expected for Ed25519).
    #[error("cannot encode the new p2p identity: {0}")]
    Encode(String),
}

/// Path of the identity file in `data_dir`.
pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_FILE)
}

/// Load the keypair from `<data_dir>/p2p_identity.key`, creating a new Ed25519 keypair (and
/// the data dir) if the file does not exist.
///
/// # Errors
/// [`IdentityError::Corrupt`] if the file exists but does not decode (the file is left as
/// it is); [`IdentityError::Io`] if it cannot be read or written.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, IdentityError> {
    let path = identity_path(data_dir);
    match fs::read(&path) {
        Ok(bytes) => decode(&path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(data_dir, &path),
        Err(source) => Err(IdentityError::Io { path, source }),
    }
}

/// Load an existing identity file.
///
/// # Errors
/// [`IdentityError::Io`] if it cannot be read (including when it is missing);
/// [`IdentityError::Corrupt`] if it does not decode.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let bytes = fs::read(path).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(path, &bytes)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Keypair, IdentityError> {
    warn_if_loose(path);
    Keypair::from_protobuf_encoding(bytes).map_err(|e| IdentityError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(unix)]
fn warn_if_loose(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o777),
            "p2p identity file is readable by others; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_loose(_path: &Path) {}

fn create(data_dir: &Path, path: &Path) -> Result<Keypair, IdentityError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| IdentityError::Io { path: p, source }
    };
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let kp = Keypair::generate_ed25519();
    let bytes = kp
        .to_protobuf_encoding()
        .map_err(|e| IdentityError::Encode(e.to_string()))?;
    let tmp = data_dir.join(format!(".{IDENTITY_FILE}.tmp.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let write = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = write {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    // Make the rename durable; failure here is not fatal (the key is already in place).
    if let Ok(d) = fs::File::open(data_dir) {
        let _ = d.sync_all();
    }
    tracing::info!(
        path = %path.display(),
        peer_id = %kp.public().to_peer_id(),
        "created a new p2p identity"
    );
    Ok(kp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "flotilla-identity-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn created_once_then_loaded() {
        let d = tmpdir("persist");
        let a = load_or_create(&d).unwrap();
        let b = load_or_create(&d).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        assert_eq!(
            load(&identity_path(&d)).unwrap().public(),
            a.public(),
            "load() reads the same key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(identity_path(&d))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(IDENTITY_FILE)]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error_and_untouched() {
        let d = tmpdir("corrupt");
        fs::create_dir_all(&d).unwrap();
        fs::write(identity_path(&d), b"not a key").unwrap();
        let err = load_or_create(&d).unwrap_err();
        assert!(matches!(err, IdentityError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("p2p_identity.key"), "{msg}");
        assert_eq!(fs::read(identity_path(&d)).unwrap(), b"not a key");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_file_load_names_it() {
        let d = tmpdir("missing");
        let err = load(&identity_path(&d)).unwrap_err();
        assert!(err.to_string().contains("p2p_identity.key"), "{err}");
    }
}
