//! Raw disk yardstick: what the bare disk can do, so Sluice's numbers can be
//! reported as ratios against it rather than as absolute figures that mean
//! little across machines.
//!
//! Three measurements, all with `O_DIRECT` (no page cache) over io_uring:
//! - [`sequential_write`]: stream a new file at a given block size and queue
//!   depth, with one `fdatasync` at the end (the bandwidth ceiling for the log);
//! - [`sequential_read`]: stream existing files back whole (the ceiling for
//!   replay/scans);
//! - [`write_fdatasync_latency_us`]: append one 4 KiB block and `fdatasync` it,
//!   many times (the floor for a durable commit of a small batch);
//! - [`open_loop_ack_latency_us`]: the same commit behind a loopback TCP round trip,
//!   requests sent open loop at a fixed rate: the floor for a produce-ack on this
//!   machine, scheduler and virtualisation included.
//!
//! Buffers are 4096-aligned heap allocations and are not registered with the
//! ring (the memlock limit is small and registration is not what we measure).

use hdrhistogram::Histogram;
use io_uring::{opcode, squeue, types, IoUring};
use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

const ALIGN: usize = 4096;

/// Block size and queue depth for the sequential tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDiskConfig {
    /// Bytes per I/O; must be a non-zero multiple of 4096 and fit in a `u32`.
    pub block_bytes: usize,
    /// I/Os kept in flight; must be at least 1.
    pub queue_depth: usize,
}

/// Bytes moved and the wall-clock seconds it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub bytes: u64,
    pub seconds: f64,
}

impl Throughput {
    /// Throughput in MB/s, with MB = 10^6 bytes.
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }
}

/// A zero-initialised heap buffer aligned to 4096, as `O_DIRECT` requires.
struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> io::Result<Self> {
        let layout =
            Layout::from_size_align(len.max(1), ALIGN).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: layout has non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let mut buf = AlignedBuf { ptr, layout };
        // Non-trivial content (in case the device compresses), and it faults every page in before timing starts.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in buf.as_mut_slice() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        Ok(buf)
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of layout.size() initialised bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

fn open_direct(path: &Path, write: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    if write {
        opts.write(true).create(true).truncate(true);
    } else {
        opts.read(true);
    }
    opts.custom_flags(libc::O_DIRECT | libc::O_CLOEXEC).open(path)
}

fn setup(cfg: &RawDiskConfig) -> io::Result<(IoUring, Vec<AlignedBuf>)> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    if cfg.block_bytes == 0 || cfg.block_bytes & (ALIGN - 1) != 0 || u32::try_from(cfg.block_bytes).is_err() {
        return Err(invalid("block_bytes must be a non-zero multiple of 4096 below 4 GiB"));
    }
    let entries = u32::try_from(cfg.queue_depth).ok().filter(|&q| (1..=32768).contains(&q));
    let entries = entries.ok_or_else(|| invalid("queue_depth must be in 1..=32768"))?;
    let ring = IoUring::new(entries)?;
    let bufs = (0..cfg.queue_depth).map(|_| AlignedBuf::new(cfg.block_bytes)).collect::<io::Result<_>>()?;
    Ok((ring, bufs))
}

/// `submit_and_wait`, retrying on EINTR (already-consumed SQEs are not resubmitted).
fn wait(ring: &IoUring, want: usize) -> io::Result<()> {
    loop {
        match ring.submit_and_wait(want) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(drop),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

/// Moves bytes `[0, len)` of `file` through `bufs`, keeping every buffer in flight.
/// Returns the bytes moved (fewer than `len` only for a read that met EOF).
/// Reads add one byte per 4 KiB page into `touch`.
fn stream(
    ring: &mut IoUring,
    bufs: &mut Vec<AlignedBuf>,
    file: &File,
    len: u64,
    dir: Dir,
    touch: &mut u64,
) -> io::Result<u64> {
    let fd = types::Fd(file.as_raw_fd());
    let block = bufs.first().map_or(0, |b| b.layout.size() as u64);
    let mut free: Vec<usize> = (0..bufs.len()).collect();
    let mut slots = vec![(0u64, 0u32); bufs.len()]; // (offset, length) of the I/O using each buffer
    let (mut next, mut done, mut inflight) = (0u64, 0u64, 0usize);
    let (mut err, mut eof): (Option<io::Error>, bool) = (None, false);
    loop {
        // After an error or EOF we stop submitting but still drain: the kernel owns in-flight buffers.
        while err.is_none() && !eof && next < len {
            let Some(slot) = free.pop() else { break };
            let n = block.min(len - next) as u32;
            let ptr = bufs[slot].ptr.as_ptr();
            let sqe = match dir {
                Dir::Read => opcode::Read::new(fd, ptr, n).offset(next).build(),
                Dir::Write => opcode::Write::new(fd, ptr, n).offset(next).build(),
            };
            // SAFETY: the buffer and fd outlive the I/O, since we reap every completion before returning.
            if unsafe { ring.submission().push(&sqe.user_data(slot as u64)) }.is_err() {
                err = Some(io::Error::other("io_uring submission queue full"));
                free.push(slot);
                break;
            }
            slots[slot] = (next, n);
            next += u64::from(n);
            inflight += 1;
        }
        if inflight == 0 {
            break;
        }
        if let Err(e) = wait(ring, 1) {
            // Cannot reap, so the kernel may still use the buffers: leak them rather than free them.
            std::mem::forget(std::mem::take(bufs));
            return Err(e);
        }
        for cqe in ring.completion() {
            let slot = cqe.user_data() as usize;
            let (off, want) = slots[slot];
            free.push(slot);
            inflight -= 1;
            let res = cqe.result();
            if res < 0 {
                err.get_or_insert(io::Error::from_raw_os_error(-res));
                continue;
            }
            let got = res as u32;
            if got < want {
                let at_eof = dir == Dir::Read && file.metadata().is_ok_and(|m| off + u64::from(got) >= m.len());
                if !at_eof {
                    let (kind, what) = match dir {
                        Dir::Read => (io::ErrorKind::UnexpectedEof, "read"),
                        Dir::Write => (io::ErrorKind::WriteZero, "write"),
                    };
                    let msg = format!("short {what}: {got} of {want} bytes at offset {off}");
                    err.get_or_insert(io::Error::new(kind, msg));
                    continue;
                }
                eof = true; // the file shrank under us; take what we got
            }
            if dir == Dir::Read {
                let page_bytes = &bufs[slot].as_slice()[..got as usize];
                *touch = page_bytes.iter().step_by(ALIGN).fold(*touch, |s, &b| s.wrapping_add(u64::from(b)));
            }
            done += u64::from(got);
        }
    }
    err.map_or(Ok(done), Err)
}

/// Sequentially writes `total_bytes` (rounded up to `block_bytes`) to a new file at `path` with
/// O_DIRECT, keeping `queue_depth` writes of `block_bytes` in flight, then one fdatasync at the
/// end (included in the time). Creates/truncates the file.
pub fn sequential_write(path: &Path, total_bytes: u64, cfg: &RawDiskConfig) -> io::Result<Throughput> {
    let (mut ring, mut bufs) = setup(cfg)?;
    let block = cfg.block_bytes as u64;
    let len = total_bytes.div_ceil(block).checked_mul(block);
    let len = len.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "total_bytes too large"))?;
    let file = open_direct(path, true)?;
    let start = Instant::now();
    stream(&mut ring, &mut bufs, &file, len, Dir::Write, &mut 0)?;
    file.sync_data()?;
    Ok(Throughput { bytes: len, seconds: start.elapsed().as_secs_f64() })
}

/// Sequentially reads the given files whole (each file's length rounded down to 4096; files are
/// read one after another) with O_DIRECT, `queue_depth` reads of `block_bytes` in flight.
/// Returns bytes read and time (opening each file is inside the timing). Touches one byte per
/// 4 KiB of what was read so the reads cannot be optimised away.
pub fn sequential_read(paths: &[PathBuf], cfg: &RawDiskConfig) -> io::Result<Throughput> {
    let (mut ring, mut bufs) = setup(cfg)?;
    let (mut bytes, mut touch) = (0u64, 0u64);
    let start = Instant::now();
    for path in paths {
        let file = open_direct(path, false)?;
        let len = file.metadata()?.len() & !(ALIGN as u64 - 1);
        bytes += stream(&mut ring, &mut bufs, &file, len, Dir::Read, &mut touch)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(touch);
    Ok(Throughput { bytes, seconds })
}

/// `samples` times: writes one 4 KiB block at the next aligned position of a new file at `path`
/// (O_DIRECT) and fdatasyncs it, both through io_uring (a write linked to an fsync with the
/// DATASYNC flag), recording the microseconds of write+fdatasync into a histogram
/// (1 us .. 60 s, 3 significant figures). Creates/truncates the file.
pub fn write_fdatasync_latency_us(path: &Path, samples: usize) -> io::Result<Histogram<u64>> {
    let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3).map_err(io::Error::other)?;
    // Deliberately no fallocate: each sample appends past EOF, as a log does, so every
    // fdatasync also commits the size/extent change, and that cost is part of the yardstick.
    let file = open_direct(path, true)?;
    let fd = types::Fd(file.as_raw_fd());
    let mut ring = IoUring::new(4)?;
    let buf = AlignedBuf::new(ALIGN)?;
    for i in 0..samples as u64 {
        let write = opcode::Write::new(fd, buf.ptr.as_ptr(), ALIGN as u32).offset(i * ALIGN as u64);
        let write = write.build().flags(squeue::Flags::IO_LINK).user_data(0);
        let sync = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(1);
        let start = Instant::now();
        // SAFETY: buf and fd outlive both ops; the ring is empty here, so both are reaped below.
        unsafe { ring.submission().push_multiple(&[write, sync]) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        let mut res = [None, None];
        while res.iter().any(Option::is_none) {
            if let Err(e) = wait(&ring, 1) {
                std::mem::forget(buf); // the kernel may still read it
                return Err(e);
            }
            for cqe in ring.completion() {
                res[(cqe.user_data() & 1) as usize] = Some(cqe.result());
            }
        }
        let micros = start.elapsed().as_micros();
        // The write is checked first: if it failed, the linked fsync just reports ECANCELED.
        match res {
            [Some(w), _] if w < 0 => return Err(io::Error::from_raw_os_error(-w)),
            [Some(w), _] if w as usize != ALIGN => {
                return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write: {w} of {ALIGN} bytes")))
            }
            [_, Some(s)] if s < 0 => return Err(io::Error::from_raw_os_error(-s)),
            _ => {}
        }
        hist.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
    }
    Ok(hist)
}

/// Bytes of a request in [`open_loop_ack_latency_us`] (a small produce's size).
const ACK_REQUEST_BYTES: usize = 100;

/// Open-loop commit latency with nothing but the kernel in the way: a thread serves one
/// loopback TCP connection, appending a 4 KiB `O_DIRECT` block and `fdatasync`ing it for
/// each 100-byte request before an 8-byte reply. Requests are due at `rate` per second
/// for `seconds`; latency counts from when a request was due (no coordinated omission).
/// Microseconds.
pub fn open_loop_ack_latency_us(path: &Path, rate: u64, seconds: u64) -> io::Result<Histogram<u64>> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let file = open_direct(path, true)?;
    let server = std::thread::spawn(move || -> io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let buf = AlignedBuf::new(ALIGN)?;
        let mut request = [0u8; ACK_REQUEST_BYTES];
        let mut at = 0u64;
        while conn.read_exact(&mut request).is_ok() {
            // SAFETY: buf is ALIGN bytes, aligned for O_DIRECT, and outlives the call.
            let n = unsafe { libc::pwrite(file.as_raw_fd(), buf.ptr.as_ptr().cast(), ALIGN, at as libc::off_t) };
            if n != ALIGN as isize {
                return Err(io::Error::last_os_error());
            }
            file.sync_data()?;
            at += ALIGN as u64;
            conn.write_all(&request[..8])?;
        }
        Ok(())
    });
    let mut sender = std::net::TcpStream::connect(addr)?;
    sender.set_nodelay(true)?;
    let mut receiver = sender.try_clone()?;
    let total = rate * seconds;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let replies = std::thread::spawn(move || -> io::Result<Histogram<u64>> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000, 3).map_err(io::Error::other)?;
        let mut reply = [0u8; 8];
        for _ in 0..total {
            receiver.read_exact(&mut reply)?;
            let due = start + interval * u64::from_le_bytes(reply) as u32;
            h.saturating_record(Instant::now().saturating_duration_since(due).as_micros() as u64);
        }
        Ok(h)
    });
    let mut request = [0u8; ACK_REQUEST_BYTES];
    for i in 0..total {
        crate::wait_until(start + interval * i as u32);
        request[..8].copy_from_slice(&i.to_le_bytes());
        sender.write_all(&request)?;
    }
    let h = replies.join().map_err(|_| io::Error::other("reply thread panicked"))??;
    drop(sender);
    server.join().map_err(|_| io::Error::other("server thread panicked"))??;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A per-test directory under the temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("sluice-rawdisk-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn write_then_read_back() {
        let dir = TempDir::new("rw");
        let path = dir.0.join("data");
        let cfg = RawDiskConfig { block_bytes: 256 << 10, queue_depth: 4 };
        let w = sequential_write(&path, (8 << 20) - 1000, &cfg).expect("write");
        assert_eq!(w.bytes, 8 << 20); // rounded up to a whole block
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 8 << 20);
        // A second file whose length is not a multiple of 4096: the tail is skipped.
        let odd = dir.0.join("odd");
        std::fs::write(&odd, vec![7u8; 3 * 4096 + 100]).expect("write odd");
        let r = sequential_read(&[path.clone(), odd], &cfg).expect("read");
        assert_eq!(r.bytes, (8 << 20) + 3 * 4096);
        assert!(w.mb_per_s() > 0.0 && r.mb_per_s() > 0.0);
    }

    #[test]
    fn rejects_bad_config() {
        let dir = TempDir::new("bad");
        let bad = RawDiskConfig { block_bytes: 1000, queue_depth: 4 };
        assert!(sequential_write(&dir.0.join("x"), 4096, &bad).is_err());
        let bad = RawDiskConfig { block_bytes: 4096, queue_depth: 0 };
        assert!(sequential_read(&[], &bad).is_err());
    }

    #[test]
    fn latency_samples() {
        let dir = TempDir::new("lat");
        let hist = write_fdatasync_latency_us(&dir.0.join("log"), 50).expect("latency");
        assert_eq!(hist.len(), 50);
        assert!(hist.value_at_quantile(0.5) >= 1);
    }

    #[test]
    fn open_loop_ack_answers_every_request() {
        let dir = TempDir::new("ack");
        let hist = open_loop_ack_latency_us(&dir.0.join("log"), 200, 1).expect("open-loop ack");
        assert_eq!(hist.len(), 200);
        // Each request made the server append one block.
        assert_eq!(std::fs::metadata(dir.0.join("log")).expect("log").len(), 200 * ALIGN as u64);
    }

    /// The yardstick figures: `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn print_yardstick() {
        let dir = TempDir::new("figures");
        let path = dir.0.join("data");
        let cfg = RawDiskConfig { block_bytes: 1 << 20, queue_depth: 4 };
        let w = sequential_write(&path, 256 << 20, &cfg).expect("write");
        let r = sequential_read(&[path], &cfg).expect("read");
        let h = write_fdatasync_latency_us(&dir.0.join("log"), 200).expect("latency");
        println!("seq write 1 MiB qd4, 256 MiB: {:.1} MB/s ({:.3} s)", w.mb_per_s(), w.seconds);
        println!("seq read  1 MiB qd4, 256 MiB: {:.1} MB/s ({:.3} s)", r.mb_per_s(), r.seconds);
        println!(
            "4 KiB write+fdatasync, 200 samples: p50 {} us, p99 {} us, min {} us, max {} us",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.min(),
            h.max()
        );
    }
}
