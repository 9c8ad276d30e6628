//! The simulated disk: an in-memory twin of the real one for fault injection.
//!
//! Models what a real disk and file system may do, reproducibly from a seed:
//! - writes not yet covered by an fdatasync are dropped, kept or torn at any byte on a
//!   simulated [`SimDisk::crash`];
//! - directory entries (creations, renames, removals) not yet covered by a directory sync
//!   may be lost on a crash;
//! - bits flip in data already on disk ([`SimDisk::flip_bit`]);
//! - a chosen write or sync fails with EIO or ENOSPC ([`SimDisk::fail_write_in`],
//!   [`SimDisk::fail_sync_in`]), and a capacity makes writes and allocations past it fail
//!   with ENOSPC;
//! - optionally, writes and syncs stay in the device for a while ([`SimConfig::io_yields_max`]):
//!   other tasks run meanwhile, a sync covers only the writes that had landed when it was
//!   issued, and a write still in the device at a crash is lost.
//!
//! It sits beside the real disk, never in its place: every test of the engine on the
//! simulated disk has a twin on real files.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{AlignedHeap, DirEntry, IoError, IoOp, IoResult, OpenMode, ReadBuf};

/// How the simulated disk behaves.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// Seeds every random choice (crash outcomes, random bit flips).
    pub seed: u64,
    /// Total bytes the disk holds; writes past it fail with ENOSPC.
    pub capacity_bytes: u64,
    /// Each write and fdatasync completes after a seeded number of executor yields, up to
    /// this many (0: at once). Lets a test land writes while a sync is in the device.
    pub io_yields_max: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { seed: 0, capacity_bytes: u64::MAX, io_yields_max: 0 }
    }
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write {
        pos: u64,
        data: Vec<u8>,
    },
    Truncate {
        len: u64,
    },
    /// fallocate: grows the file with zeros, never shrinks it.
    Allocate {
        len: u64,
    },
}

#[derive(Debug, Default)]
struct FileState {
    /// Content as of the last fdatasync: what survives any crash.
    synced: Vec<u8>,
    /// Content as the running program sees it.
    current: Vec<u8>,
    /// Operations since the last fdatasync, in order.
    pending: Vec<PendingOp>,
    /// Operations ever landed, and ever made durable: a sync issued when `landed` was L
    /// covers the operations up to L, whatever other syncs did meanwhile.
    landed: u64,
    synced_ops: u64,
}

type FileRef = Rc<RefCell<FileState>>;

/// A pending injected failure: the `countdown`-th next operation fails with `errno`.
#[derive(Debug, Clone, Copy)]
struct Injected {
    countdown: u64,
    errno: i32,
}

struct SimState {
    config: SimConfig,
    rng: SmallRng,
    /// The namespace as the running program sees it.
    files: BTreeMap<PathBuf, FileRef>,
    /// The namespace as of the last sync of each directory.
    durable_files: BTreeMap<PathBuf, FileRef>,
    dirs: BTreeSet<PathBuf>,
    /// Bumped by every crash: handles opened before it fail.
    generation: u64,
    write_fault: Option<Injected>,
    sync_fault: Option<Injected>,
    syncs: u64,
    writes: u64,
}

/// A simulated disk. Clones share the disk.
#[derive(Clone)]
pub struct SimDisk(Rc<RefCell<SimState>>);

/// An open file of a [`SimDisk`].
pub struct SimFile {
    disk: SimDisk,
    path: PathBuf,
    file: FileRef,
    generation: u64,
    writable: bool,
}

fn errno_err(op: IoOp, path: &Path, errno: i32) -> IoError {
    IoError::new(op, path, std::io::Error::from_raw_os_error(errno))
}

fn apply(content: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write { pos, data } => {
            let pos = *pos as usize;
            let end = pos + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[pos..end].copy_from_slice(data);
        }
        PendingOp::Truncate { len } => content.resize(*len as usize, 0),
        PendingOp::Allocate { len } => {
            if content.len() < *len as usize {
                content.resize(*len as usize, 0);
            }
        }
    }
}

impl SimDisk {
    pub fn new(config: SimConfig) -> Self {
        SimDisk(Rc::new(RefCell::new(SimState {
            config,
            rng: SmallRng::seed_from_u64(config.seed),
            files: BTreeMap::new(),
            durable_files: BTreeMap::new(),
            dirs: BTreeSet::from([PathBuf::from("/")]),
            generation: 0,
            write_fault: None,
            sync_fault: None,
            syncs: 0,
            writes: 0,
        })))
    }

    /// The `n`-th next write (0 = the very next) fails with `errno` (EIO, ENOSPC, ...).
    pub fn fail_write_in(&self, n: u64, errno: i32) {
        self.0.borrow_mut().write_fault = Some(Injected { countdown: n, errno });
    }

    /// The `n`-th next fdatasync (0 = the very next) fails with `errno`.
    pub fn fail_sync_in(&self, n: u64, errno: i32) {
        self.0.borrow_mut().sync_fault = Some(Injected { countdown: n, errno });
    }

    /// Number of fdatasyncs and writes so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.0.borrow();
        (s.syncs, s.writes)
    }

    /// Flips one bit of a file's content, in what is on disk and what is seen alike.
    pub fn flip_bit(&self, path: &Path, byte: u64, bit: u8) -> bool {
        let s = self.0.borrow();
        let Some(file) = s.files.get(path) else {
            return false;
        };
        let mut f = file.borrow_mut();
        let i = byte as usize;
        let mask = 1u8 << (bit % 8);
        let mut hit = false;
        if i < f.synced.len() {
            f.synced[i] ^= mask;
            hit = true;
        }
        if i < f.current.len() {
            f.current[i] ^= mask;
            hit = true;
        }
        hit
    }

    /// Length of a file's current content, if it exists.
    pub fn file_len(&self, path: &Path) -> Option<u64> {
        self.0.borrow().files.get(path).map(|f| f.borrow().current.len() as u64)
    }

    /// A simulated power loss: every write and namespace change not covered by a sync is
    /// kept, dropped or (writes) torn at a random byte, chosen by the seeded generator.
    /// Afterwards the surviving state is all on disk; handles opened before fail with EIO.
    pub fn crash(&self) {
        let mut s = self.0.borrow_mut();
        let s = &mut *s;
        s.generation += 1;
        // Namespace: per directory, unsynced changes survive as a whole or not at all.
        let mut dirs_changed = BTreeSet::new();
        for (path, file) in &s.files {
            if s.durable_files.get(path).is_none_or(|d| !Rc::ptr_eq(d, file)) {
                dirs_changed.insert(path.parent().map(Path::to_path_buf).unwrap_or_default());
            }
        }
        for path in s.durable_files.keys() {
            if !s.files.contains_key(path) {
                dirs_changed.insert(path.parent().map(Path::to_path_buf).unwrap_or_default());
            }
        }
        let mut survivors: BTreeMap<PathBuf, FileRef> = BTreeMap::new();
        for dir in &dirs_changed {
            let keep_current = s.rng.gen_bool(0.5);
            let source = if keep_current { &s.files } else { &s.durable_files };
            for (p, f) in source {
                if p.parent() == Some(dir.as_path()) {
                    survivors.insert(p.clone(), f.clone());
                }
            }
        }
        for (p, f) in &s.files {
            let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
            if !dirs_changed.contains(&dir) {
                survivors.insert(p.clone(), f.clone());
            }
        }
        // Contents: unsynced operations are applied, dropped or torn.
        let mut fresh = BTreeMap::new();
        for (p, f) in survivors {
            let state = f.borrow();
            let mut content = state.synced.clone();
            for op in &state.pending {
                match s.rng.gen_range(0..3) {
                    0 => apply(&mut content, op),
                    1 => {}
                    _ => {
                        if let PendingOp::Write { pos, data } = op {
                            let cut = s.rng.gen_range(0..=data.len());
                            apply(&mut content, &PendingOp::Write { pos: *pos, data: data[..cut].to_vec() });
                        } else {
                            apply(&mut content, op);
                        }
                    }
                }
            }
            let file =
                Rc::new(RefCell::new(FileState { synced: content.clone(), current: content, ..FileState::default() }));
            fresh.insert(p, file);
        }
        s.durable_files = fresh.clone();
        s.files = fresh;
        s.write_fault = None;
        s.sync_fault = None;
    }

    fn check_fault(slot: &mut Option<Injected>) -> Option<i32> {
        let inj = slot.as_mut()?;
        if inj.countdown == 0 {
            let errno = inj.errno;
            *slot = None;
            Some(errno)
        } else {
            inj.countdown -= 1;
            None
        }
    }

    pub(super) fn open(&self, path: &Path, mode: OpenMode) -> IoResult<SimFile> {
        let mut s = self.0.borrow_mut();
        let parent = path.parent().unwrap_or(Path::new("/"));
        let existing = s.files.get(path).cloned();
        let file = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => return Err(errno_err(IoOp::Open, path, libc::EEXIST)),
            (OpenMode::Read | OpenMode::ReadWrite, None) => return Err(errno_err(IoOp::Open, path, libc::ENOENT)),
            (_, Some(f)) => f,
            (OpenMode::Create | OpenMode::CreateNew, None) => {
                if !s.dirs.contains(parent) {
                    return Err(errno_err(IoOp::Open, path, libc::ENOENT));
                }
                let f: FileRef = Rc::default();
                s.files.insert(path.to_path_buf(), f.clone());
                f
            }
        };
        Ok(SimFile {
            disk: self.clone(),
            path: path.to_path_buf(),
            file,
            generation: s.generation,
            writable: mode != OpenMode::Read,
        })
    }

    pub(super) fn create_dir_all(&self, path: &Path) -> IoResult<()> {
        let mut s = self.0.borrow_mut();
        for ancestor in path.ancestors() {
            s.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    pub(super) fn sync_dir(&self, dir: &Path) -> IoResult<()> {
        let mut s = self.0.borrow_mut();
        if !s.dirs.contains(dir) {
            return Err(errno_err(IoOp::SyncDir, dir, libc::ENOENT));
        }
        let s = &mut *s;
        s.durable_files.retain(|p, _| p.parent() != Some(dir));
        for (p, f) in &s.files {
            if p.parent() == Some(dir) {
                s.durable_files.insert(p.clone(), f.clone());
            }
        }
        Ok(())
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> IoResult<()> {
        let mut s = self.0.borrow_mut();
        let Some(f) = s.files.remove(from) else {
            return Err(errno_err(IoOp::Rename, from, libc::ENOENT));
        };
        s.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    pub(super) fn remove_file(&self, path: &Path) -> IoResult<()> {
        let mut s = self.0.borrow_mut();
        match s.files.remove(path) {
            Some(_) => Ok(()),
            None => Err(errno_err(IoOp::Remove, path, libc::ENOENT)),
        }
    }

    pub(super) fn remove_dir_all(&self, path: &Path) -> IoResult<()> {
        let mut s = self.0.borrow_mut();
        if !s.dirs.contains(path) {
            return Err(errno_err(IoOp::Remove, path, libc::ENOENT));
        }
        s.files.retain(|p, _| !p.starts_with(path));
        s.durable_files.retain(|p, _| !p.starts_with(path));
        s.dirs.retain(|d| !d.starts_with(path));
        Ok(())
    }

    pub(super) fn list_dir(&self, path: &Path) -> IoResult<Vec<DirEntry>> {
        let s = self.0.borrow();
        if !s.dirs.contains(path) {
            return Err(errno_err(IoOp::ListDir, path, libc::ENOENT));
        }
        let name_of = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_string);
        let mut out: Vec<DirEntry> = s
            .files
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| name_of(p).map(|name| DirEntry { name, is_dir: false }))
            .collect();
        out.extend(
            s.dirs
                .iter()
                .filter(|d| d.parent() == Some(path))
                .filter_map(|d| name_of(d).map(|name| DirEntry { name, is_dir: true })),
        );
        Ok(out)
    }

    pub(super) fn exists(&self, path: &Path) -> bool {
        let s = self.0.borrow();
        s.files.contains_key(path) || s.dirs.contains(path)
    }

    fn used_bytes(s: &SimState) -> u64 {
        s.files.values().map(|f| f.borrow().current.len() as u64).sum()
    }
}

impl SimFile {
    fn check_live(&self, op: IoOp) -> IoResult<()> {
        if self.disk.0.borrow().generation != self.generation {
            return Err(errno_err(op, &self.path, libc::EIO));
        }
        Ok(())
    }

    pub(super) fn write_at(&self, data: &[u8], pos: u64) -> IoResult<()> {
        self.check_live(IoOp::Write)?;
        if !self.writable {
            return Err(errno_err(IoOp::Write, &self.path, libc::EBADF));
        }
        let mut s = self.disk.0.borrow_mut();
        s.writes += 1;
        if let Some(errno) = SimDisk::check_fault(&mut s.write_fault) {
            return Err(errno_err(IoOp::Write, &self.path, errno));
        }
        let used = SimDisk::used_bytes(&s);
        let mut f = self.file.borrow_mut();
        let growth = (pos + data.len() as u64).saturating_sub(f.current.len() as u64);
        if used + growth > s.config.capacity_bytes {
            return Err(errno_err(IoOp::Write, &self.path, libc::ENOSPC));
        }
        let op = PendingOp::Write { pos, data: data.to_vec() };
        apply(&mut f.current, &op);
        f.pending.push(op);
        f.landed += 1;
        Ok(())
    }

    pub(super) fn read_at(&self, pos: u64, len: usize) -> IoResult<ReadBuf> {
        self.check_live(IoOp::Read)?;
        let f = self.file.borrow();
        let start = (pos as usize).min(f.current.len());
        let end = (start + len).min(f.current.len());
        let heap = AlignedHeap::from_slice(&f.current[start..end]);
        Ok(ReadBuf::from_heap(heap))
    }

    /// Time in the device: a seeded number of executor yields (none unless configured).
    pub(super) async fn in_device(&self) {
        let yields = {
            let mut s = self.disk.0.borrow_mut();
            let max = s.config.io_yields_max;
            if max == 0 {
                0
            } else {
                s.rng.gen_range(0..=max)
            }
        };
        for _ in 0..yields {
            futures_lite::future::yield_now().await;
        }
    }

    /// Operations landed so far: what a sync issued now covers.
    pub(super) fn landed(&self) -> u64 {
        self.file.borrow().landed
    }

    /// Completes a sync issued when `covered` operations had landed: those become durable;
    /// any that landed while it was in the device stay pending.
    pub(super) fn fdatasync(&self, covered: u64) -> IoResult<()> {
        self.check_live(IoOp::Sync)?;
        let mut s = self.disk.0.borrow_mut();
        s.syncs += 1;
        if let Some(errno) = SimDisk::check_fault(&mut s.sync_fault) {
            // Like Linux after a failed fsync: the dirty data may or may not be on disk,
            // and the error is not reported again. The engine must not retry and ack.
            return Err(errno_err(IoOp::Sync, &self.path, errno));
        }
        let mut f = self.file.borrow_mut();
        let f = &mut *f;
        let newly = (covered.saturating_sub(f.synced_ops) as usize).min(f.pending.len());
        for op in f.pending.drain(..newly) {
            apply(&mut f.synced, &op);
        }
        f.synced_ops += newly as u64;
        debug_assert!(!f.pending.is_empty() || f.synced == f.current, "synced content diverged from current");
        Ok(())
    }

    pub(super) fn truncate(&self, len: u64) -> IoResult<()> {
        self.check_live(IoOp::Truncate)?;
        let mut f = self.file.borrow_mut();
        let op = PendingOp::Truncate { len };
        apply(&mut f.current, &op);
        f.pending.push(op);
        f.landed += 1;
        Ok(())
    }

    /// Like fallocate: the file grows with zeros to `len` (never shrinks), a change that
    /// is pending until synced; past the capacity it fails with ENOSPC.
    pub(super) fn allocate(&self, len: u64) -> IoResult<()> {
        self.check_live(IoOp::Allocate)?;
        if !self.writable {
            return Err(errno_err(IoOp::Allocate, &self.path, libc::EBADF));
        }
        let s = self.disk.0.borrow();
        let used = SimDisk::used_bytes(&s);
        let mut f = self.file.borrow_mut();
        let growth = len.saturating_sub(f.current.len() as u64);
        if growth == 0 {
            return Ok(());
        }
        if used + growth > s.config.capacity_bytes {
            return Err(errno_err(IoOp::Allocate, &self.path, libc::ENOSPC));
        }
        let op = PendingOp::Allocate { len };
        apply(&mut f.current, &op);
        f.pending.push(op);
        f.landed += 1;
        Ok(())
    }

    pub(super) fn len(&self) -> u64 {
        self.file.borrow().current.len() as u64
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}
