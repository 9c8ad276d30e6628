//! An exclusive lock on a data directory, so two servers never share one.

use std::os::fd::AsRawFd;
use std::path::Path;

use super::{IoError, IoOp, IoResult};

/// Held for the life of a server; released when dropped (or when the process dies).
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Creates `dir` if needed and takes `dir/LOCK` with `flock(LOCK_EX | LOCK_NB)`.
    pub fn acquire(dir: &Path) -> IoResult<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| IoError::new(IoOp::CreateDir, dir, e))?;
        let path = dir.join("LOCK");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| IoError::new(IoOp::Open, &path, e))?;
        // SAFETY: flock on a valid, owned descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            let msg = format!("data directory is in use by another process ({err})");
            return Err(IoError::new(IoOp::Open, &path, std::io::Error::new(err.kind(), msg)));
        }
        Ok(DirLock { _file: file })
    }
}
