//! One engine per data dir: an advisory `flock(2)` on `flotilla.lock`, which holds the
//! owner's pid. The kernel drops the lock when the owner exits, even on SIGKILL, so a stale
//! file never blocks a new engine.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Errors taking the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The data dir or lock file could not be created or opened.
    #[error("cannot use data dir {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Outcome of [`try_lock`].
#[derive(Debug)]
pub enum LockState {
    /// This process now owns the data dir.
    Acquired(DataDirLock),
    /// Another live process owns it; its pid when readable.
    HeldBy(Option<u32>),
}

/// Create `dir` (mode 0700) if needed.
pub fn ensure_dir(dir: &Path) -> Result<(), LockError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| LockError::Io {
            path: dir.into(),
            source: e,
        })
}

/// Try to take the data dir's lock without blocking.
pub fn try_lock(dir: &Path) -> Result<LockState, LockError> {
    ensure_dir(dir)?;
    let path = dir.join("flotilla.lock");
    let io = |e| LockError::Io {
        path: path.clone(),
        source: e,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on an fd we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut s = String::new();
            let _ = file.read_to_string(&mut s);
            return Ok(LockState::HeldBy(s.trim().parse().ok()));
        }
        return Err(io(err));
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(LockState::Acquired(DataDirLock { _file: file, path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_sees_owner_pid_and_release_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let l = match try_lock(d.path()).unwrap() {
            LockState::Acquired(l) => l,
            LockState::HeldBy(_) => panic!("fresh dir was locked"),
        };
        // flock locks belong to the open file description: a second open conflicts.
        match try_lock(d.path()).unwrap() {
            LockState::HeldBy(pid) => assert_eq!(pid, Some(std::process::id())),
            LockState::Acquired(_) => panic!("lock taken twice"),
        }
        drop(l);
        assert!(matches!(
            try_lock(d.path()).unwrap(),
            LockState::Acquired(_)
        ));
    }
}
