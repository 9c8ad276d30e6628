//! Disk access: the one narrow interface through which the engine touches files.
//!
//! Owns: opening, aligned reads and writes, fdatasync, truncate, rename, delete and
//! directory sync. Nothing outside `io/` touches the file system.
//!
//! Two implementations sit behind [`Storage`]: [`dma`] (glommio DMA files, O_DIRECT over
//! io_uring) for real use, and [`sim`], an in-memory disk that loses unsynced writes on a
//! simulated crash, tears writes at any byte, flips bits and fails writes or syncs with
//! EIO/ENOSPC, reproducibly from a seed. Dispatch is a plain `enum`, not a trait object:
//! the set is closed and the futures stay `!Send` and allocation-free.
//!
//! Promises: every write and read is aligned to [`BLOCK_BYTES`] in position and length
//! (asserted); an error carries the operation and the path.

mod buffer;
mod dir_lock;
mod dma;
pub mod sim;

use std::path::{Path, PathBuf};

pub use buffer::{AlignedHeap, IoBuf, ReadBuf, SharedBuf};
pub use dir_lock::DirLock;
pub use sim::{SimConfig, SimDisk};

use crate::limits::{align_up, BLOCK_BYTES};

/// What an I/O operation was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Open,
    Read,
    Write,
    Sync,
    Truncate,
    Allocate,
    Rename,
    Remove,
    CreateDir,
    ListDir,
    SyncDir,
    Stat,
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A failed disk operation, naming the operation and the file.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct IoError {
    pub op: IoOp,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(op: IoOp, path: &Path, source: std::io::Error) -> Self {
        IoError { op, path: path.to_path_buf(), source }
    }

    pub fn is_not_found(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::NotFound
    }
}

pub type IoResult<T> = Result<T, IoError>;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; created if missing.
    Create,
    /// Read and write; must not exist yet.
    CreateNew,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// The disk: real (DMA) or simulated. Cheap to clone; clones share the disk.
#[derive(Clone)]
pub enum Storage {
    Dma,
    Sim(SimDisk),
}

/// An open file of a [`Storage`].
pub enum File {
    Dma(dma::DmaFileHandle),
    Sim(sim::SimFile),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Dma => f.write_str("Storage::Dma"),
            Storage::Sim(_) => f.write_str("Storage::Sim"),
        }
    }
}

impl Storage {
    /// The real disk: O_DIRECT files over io_uring. Must be used inside a glommio executor.
    pub fn real() -> Self {
        Storage::Dma
    }

    pub async fn open(&self, path: &Path, mode: OpenMode) -> IoResult<File> {
        match self {
            Storage::Dma => dma::open(path, mode).await.map(File::Dma),
            Storage::Sim(disk) => disk.open(path, mode).map(File::Sim),
        }
    }

    /// A buffer of `len` bytes (a multiple of the block) suitable for this disk. Its
    /// content is undefined: the caller fills all of it (use [`Storage::alloc_zeroed`] else).
    pub fn alloc_buffer(&self, len: usize) -> IoBuf {
        debug_assert!(len.is_multiple_of(BLOCK_BYTES), "buffer length {len} not block aligned");
        match self {
            Storage::Dma => IoBuf::dma(len),
            Storage::Sim(_) => IoBuf::Heap(AlignedHeap::zeroed(len)),
        }
    }

    /// A zero-filled buffer of `len` bytes (a multiple of the block).
    pub fn alloc_zeroed(&self, len: usize) -> IoBuf {
        let mut buf = self.alloc_buffer(len);
        buf.as_mut_slice().fill(0);
        buf
    }

    pub async fn create_dir_all(&self, path: &Path) -> IoResult<()> {
        match self {
            Storage::Dma => dma::create_dir_all(path).await,
            Storage::Sim(disk) => disk.create_dir_all(path),
        }
    }

    /// Makes the directory's entries (creations, renames, removals) durable.
    pub async fn sync_dir(&self, path: &Path) -> IoResult<()> {
        match self {
            Storage::Dma => dma::sync_dir(path).await,
            Storage::Sim(disk) => disk.sync_dir(path),
        }
    }

    pub async fn rename(&self, from: &Path, to: &Path) -> IoResult<()> {
        match self {
            Storage::Dma => dma::rename(from, to).await,
            Storage::Sim(disk) => disk.rename(from, to),
        }
    }

    pub async fn remove_file(&self, path: &Path) -> IoResult<()> {
        match self {
            Storage::Dma => dma::remove_file(path).await,
            Storage::Sim(disk) => disk.remove_file(path),
        }
    }

    /// Removes a directory and everything below it.
    pub async fn remove_dir_all(&self, path: &Path) -> IoResult<()> {
        match self {
            Storage::Dma => dma::remove_dir_all(path),
            Storage::Sim(disk) => disk.remove_dir_all(path),
        }
    }

    /// The entries of a directory, sorted by name.
    pub fn list_dir(&self, path: &Path) -> IoResult<Vec<DirEntry>> {
        let mut entries = match self {
            Storage::Dma => dma::list_dir(path)?,
            Storage::Sim(disk) => disk.list_dir(path)?,
        };
        entries.sort();
        Ok(entries)
    }

    pub fn exists(&self, path: &Path) -> bool {
        match self {
            Storage::Dma => path.exists(),
            Storage::Sim(disk) => disk.exists(path),
        }
    }

    /// Writes a small file atomically: temporary file, fdatasync, rename, directory sync.
    /// The content is zero-padded to the block; its format must carry its own length.
    pub async fn write_file_atomic(&self, path: &Path, content: &[u8]) -> IoResult<()> {
        let len = align_up(content.len().max(1) as u64) as usize;
        let mut buf = self.alloc_zeroed(len);
        buf.as_mut_slice()[..content.len()].copy_from_slice(content);
        self.write_file_atomic_buf(path, buf).await
    }

    /// As [`Storage::write_file_atomic`], the content already in a write buffer (from
    /// [`Storage::alloc_buffer`], block aligned, every byte set).
    pub async fn write_file_atomic_buf(&self, path: &Path, buf: IoBuf) -> IoResult<()> {
        let tmp = path.with_extension("tmp");
        let file = self.open(&tmp, OpenMode::Create).await?;
        file.truncate(0).await?;
        file.write_at(buf, 0).await?;
        file.fdatasync().await?;
        file.close().await?;
        self.rename(&tmp, path).await?;
        let dir = path.parent().unwrap_or(Path::new("."));
        self.sync_dir(dir).await
    }

    /// Reads a whole small file (padded to the block).
    pub async fn read_file(&self, path: &Path) -> IoResult<ReadBuf> {
        let file = self.open(path, OpenMode::Read).await?;
        let len = align_up(file.len().await?) as usize;
        let buf = file.read_at(0, len).await?;
        file.close().await?;
        Ok(buf)
    }
}

impl File {
    /// Writes the whole buffer at `pos`. Position and length are block aligned.
    pub async fn write_at(&self, buf: impl Into<SharedBuf>, pos: u64) -> IoResult<()> {
        let buf = buf.into();
        debug_assert!(pos.is_multiple_of(BLOCK_BYTES as u64), "write position {pos} not aligned");
        debug_assert!(buf.len().is_multiple_of(BLOCK_BYTES), "write length {} not aligned", buf.len());
        match self {
            File::Dma(f) => f.write_at(buf, pos).await,
            File::Sim(f) => {
                f.in_device().await;
                f.write_at(buf.as_slice(), pos)
            }
        }
    }

    /// Reads up to `len` bytes at `pos` (aligned); fewer at the end of the file.
    pub async fn read_at(&self, pos: u64, len: usize) -> IoResult<ReadBuf> {
        debug_assert!(pos.is_multiple_of(BLOCK_BYTES as u64), "read position {pos} not aligned");
        debug_assert!(len.is_multiple_of(BLOCK_BYTES), "read length {len} not aligned");
        match self {
            File::Dma(f) => f.read_at(pos, len).await,
            File::Sim(f) => f.read_at(pos, len),
        }
    }

    pub async fn fdatasync(&self) -> IoResult<()> {
        match self {
            File::Dma(f) => f.fdatasync().await,
            File::Sim(f) => {
                let covered = f.landed();
                f.in_device().await;
                f.fdatasync(covered)
            }
        }
    }

    pub async fn truncate(&self, len: u64) -> IoResult<()> {
        match self {
            File::Dma(f) => f.truncate(len).await,
            File::Sim(f) => f.truncate(len),
        }
    }

    /// Reserves the file's blocks up to `len` (aligned), growing it with zeros; shorter
    /// content is kept. Writes into reserved blocks need no change of the file's size, so
    /// the kernel runs them inline instead of handing each to a worker thread.
    pub async fn allocate(&self, len: u64) -> IoResult<()> {
        debug_assert!(len.is_multiple_of(BLOCK_BYTES as u64), "allocation length {len} not aligned");
        match self {
            File::Dma(f) => f.allocate(len).await,
            File::Sim(f) => {
                f.in_device().await;
                f.allocate(len)
            }
        }
    }

    pub async fn len(&self) -> IoResult<u64> {
        match self {
            File::Dma(f) => f.len().await,
            File::Sim(f) => Ok(f.len()),
        }
    }

    pub async fn close(self) -> IoResult<()> {
        match self {
            File::Dma(f) => f.close().await,
            File::Sim(_) => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            File::Dma(f) => f.path(),
            File::Sim(f) => f.path(),
        }
    }
}
