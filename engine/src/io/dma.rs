//! The real disk: glommio DMA files (O_DIRECT, io_uring). Metadata operations that
//! glommio lacks (mkdir, readdir, rmdir -r) use std on the cold path.

use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};

use super::{DirEntry, IoError, IoOp, IoResult, OpenMode, ReadBuf, SharedBuf};

fn io_err(op: IoOp, path: &Path, e: impl Into<std::io::Error>) -> IoError {
    IoError::new(op, path, e.into())
}

fn glommio_err(op: IoOp, path: &Path, e: glommio::GlommioError<()>) -> IoError {
    IoError::new(op, path, std::io::Error::from(e))
}

pub struct DmaFileHandle {
    file: DmaFile,
    path: PathBuf,
}

thread_local! {
    /// Devices (by parent directory) this thread has probed for IOPOLL support.
    static PROBED: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// glommio decides per device and per thread whether to use its IOPOLL ring by reading
/// 512 bytes from the first file opened there. An empty file makes that read succeed
/// trivially, the device is wrongly marked pollable, and every later read fails with
/// EOPNOTSUPP on devices without polling (virtio). So the first open on a thread probes
/// with a file that has a block of data.
async fn probe_device(dir: &Path) -> IoResult<()> {
    if is_probed(dir) {
        return Ok(());
    }
    let probe = dir.join(format!(".sluice-probe-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::write(&probe, [0u8; crate::limits::BLOCK_BYTES]).map_err(|e| io_err(IoOp::Open, &probe, e))?;
    let opened = OpenOptions::new().read(true).dma_open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    let file = opened.map_err(|e| glommio_err(IoOp::Open, &probe, e))?;
    let _ = file.close().await;
    mark_probed(dir);
    Ok(())
}

fn is_probed(dir: &Path) -> bool {
    PROBED.with(|p| p.borrow().iter().any(|d| d == dir))
}

fn mark_probed(dir: &Path) {
    if !is_probed(dir) {
        PROBED.with(|p| p.borrow_mut().push(dir.to_path_buf()));
    }
}

pub async fn open(path: &Path, mode: OpenMode) -> IoResult<DmaFileHandle> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    // A file read that holds a block of data is its own probe: reading (`sluice
    // inspect`, a read-only copy) writes nothing into the directory.
    let own_probe = matches!(mode, OpenMode::Read)
        && std::fs::metadata(path).is_ok_and(|m| m.len() >= crate::limits::BLOCK_BYTES as u64);
    if let Some(dir) = dir.filter(|_| !own_probe) {
        probe_device(dir).await?;
    }
    let mut opts = OpenOptions::new();
    match mode {
        OpenMode::Read => opts.read(true),
        OpenMode::ReadWrite => opts.read(true).write(true),
        OpenMode::Create => opts.read(true).write(true).create(true),
        OpenMode::CreateNew => opts.read(true).write(true).create_new(true),
    };
    let file = opts.dma_open(path).await.map_err(|e| glommio_err(IoOp::Open, path, e))?;
    if let Some(dir) = dir.filter(|_| own_probe) {
        mark_probed(dir);
    }
    Ok(DmaFileHandle { file, path: path.to_path_buf() })
}

impl DmaFileHandle {
    pub async fn write_at(&self, buf: SharedBuf, pos: u64) -> IoResult<()> {
        let len = buf.len();
        let dma = match buf {
            SharedBuf::Dma(b) => b,
            SharedBuf::Heap(h) => {
                let mut b = glommio::allocate_dma_buffer(len);
                b.as_bytes_mut().copy_from_slice(h.as_slice());
                std::rc::Rc::new(b)
            }
        };
        let written = self.file.write_rc_at(dma, pos).await.map_err(|e| glommio_err(IoOp::Write, &self.path, e))?;
        if written != len {
            // O_DIRECT writes of whole blocks are not short unless the device is full.
            return Err(io_err(
                IoOp::Write,
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {written} of {len} bytes at {pos}"),
                ),
            ));
        }
        Ok(())
    }

    pub async fn read_at(&self, pos: u64, len: usize) -> IoResult<ReadBuf> {
        let r = self.file.read_at_aligned(pos, len).await.map_err(|e| glommio_err(IoOp::Read, &self.path, e))?;
        Ok(ReadBuf::Dma(r))
    }

    pub async fn fdatasync(&self) -> IoResult<()> {
        self.file.fdatasync().await.map_err(|e| glommio_err(IoOp::Sync, &self.path, e))
    }

    pub async fn truncate(&self, len: u64) -> IoResult<()> {
        self.file.truncate(len).await.map_err(|e| glommio_err(IoOp::Truncate, &self.path, e))
    }

    pub async fn allocate(&self, len: u64) -> IoResult<()> {
        self.file.pre_allocate(len, false).await.map_err(|e| glommio_err(IoOp::Allocate, &self.path, e))
    }

    pub async fn len(&self) -> IoResult<u64> {
        self.file.file_size().await.map_err(|e| glommio_err(IoOp::Stat, &self.path, e))
    }

    pub async fn close(self) -> IoResult<()> {
        self.file.close().await.map_err(|e| glommio_err(IoOp::Open, &self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `path` and its missing ancestors, syncing the parent of each directory it
/// creates: a new directory's entry is durable before anything is put in it.
pub async fn create_dir_all(path: &Path) -> IoResult<()> {
    let path = &std::path::absolute(path).map_err(|e| io_err(IoOp::CreateDir, path, e))?;
    let missing: Vec<&Path> = path.ancestors().take_while(|a| !a.exists()).collect();
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(IoOp::CreateDir, dir, e)),
        }
        if let Some(parent) = dir.parent() {
            sync_dir(parent).await?;
        }
    }
    Ok(())
}

pub async fn sync_dir(path: &Path) -> IoResult<()> {
    // glommio opens directories relative to no descriptor: a relative path fails (EBADF).
    let path = &std::path::absolute(path).map_err(|e| io_err(IoOp::SyncDir, path, e))?;
    let dir = glommio::io::Directory::open(path).await.map_err(|e| glommio_err(IoOp::SyncDir, path, e))?;
    dir.sync().await.map_err(|e| glommio_err(IoOp::SyncDir, path, e))?;
    dir.close().await.map_err(|e| glommio_err(IoOp::SyncDir, path, e))
}

pub async fn rename(from: &Path, to: &Path) -> IoResult<()> {
    glommio::io::rename(from, to).await.map_err(|e| glommio_err(IoOp::Rename, from, e))
}

pub async fn remove_file(path: &Path) -> IoResult<()> {
    glommio::io::remove(path).await.map_err(|e| glommio_err(IoOp::Remove, path, e))
}

pub fn remove_dir_all(path: &Path) -> IoResult<()> {
    std::fs::remove_dir_all(path).map_err(|e| io_err(IoOp::Remove, path, e))
}

pub fn list_dir(path: &Path) -> IoResult<Vec<DirEntry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| io_err(IoOp::ListDir, path, e))? {
        let entry = entry.map_err(|e| io_err(IoOp::ListDir, path, e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let Some(name) = entry.file_name().to_str() {
            out.push(DirEntry { name: name.to_string(), is_dir });
        }
    }
    Ok(out)
}
