//! Panics that a third-party decoder can raise on hostile bytes, caught where they happen.
//!
//! The `sluice` binary aborts on a panic: a panic is a bug, and a shard missing a task
//! could hang. Inside [`catch`], a panic is the input's fault instead: the panic hook checks
//! [`is_catching`], stays quiet, and the caller turns the failure into an error reply.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, returning `None` if it panicked. Only for pure decoding of untrusted bytes:
/// `f` must not touch state that a half-run would leave inconsistent.
pub fn catch<R>(f: impl FnOnce() -> R) -> Option<R> {
    let outer = CATCHING.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f)).ok();
    CATCHING.set(outer);
    result
}

/// Whether this thread is inside [`catch`] (for a panic hook).
pub fn is_catching() -> bool {
    CATCHING.get()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_inside_is_an_error_outside() {
        assert_eq!(super::catch(|| 7), Some(7));
        let r: Option<()> = super::catch(|| panic!("hostile input"));
        assert!(r.is_none());
        assert!(!super::is_catching());
    }
}
