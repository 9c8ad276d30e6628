//! Helpers shared by the integration tests: running code on a glommio executor, making
//! records, and starting real `sluice` processes.

use std::future::Future;

use sluice::record::{BatchBuilder, BatchPayload, RawRecord};

/// Runs an async test body on a fresh glommio executor (real io_uring) and returns its result.
pub fn run_local<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor panicked")
}

/// The value of record `i` in test streams: recognisable and checkable.
pub fn value_of(i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("record-{i:012}-").into_bytes();
    while v.len() < len {
        v.push(b'a' + (i % 26) as u8);
    }
    v.truncate(len.max(20));
    v
}

/// A batch of `count` records numbered from `first`, timestamps `ts0 + i`.
pub fn batch(first: u64, count: u64, value_len: usize, ts0: i64) -> BatchPayload {
    let mut b = BatchBuilder::new();
    for i in first..first + count {
        let key = format!("key-{}", i % 17);
        b.push(RawRecord::new(ts0 + i as i64, Some(key.as_bytes()), &value_of(i, value_len)));
    }
    b.finish().expect("batch")
}
