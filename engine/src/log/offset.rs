//! Offsets and the ordering between the kinds of offset a partition keeps.

use std::fmt;

/// A record's position in its partition: dense, starting at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

impl Offset {
    pub fn get(self) -> u64 {
        self.0
    }

    pub fn plus(self, n: u64) -> Offset {
        Offset(self.0 + n)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The offsets of one partition. The one place where their order is asserted:
/// `log_start <= written_end`, `durable_end <= written_end <= appended_end` and
/// `visible_end <= appended_end`.
///
/// - `log_start`: first offset still retained.
/// - `durable_end`: one past the last offset covered by an fdatasync.
/// - `written_end`: one past the last offset whose write to the file has completed.
/// - `appended_end`: the next offset to assign; past `written_end` while writes are in flight.
/// - `visible_end`: one past the last offset readers may see: `durable_end` for `sync`
///   topics, `appended_end` for the others (the batches not yet written are read from the
///   partition's tail cache, like Kafka serving from the page cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    log_start: Offset,
    durable_end: Offset,
    written_end: Offset,
    appended_end: Offset,
    visible_end: Offset,
}

impl PartitionOffsets {
    pub fn new(log_start: Offset, durable_end: Offset, written_end: Offset) -> Self {
        let o = PartitionOffsets {
            log_start,
            durable_end,
            written_end,
            appended_end: written_end,
            visible_end: written_end,
        };
        o.check();
        o
    }

    fn check(&self) {
        debug_assert!(self.log_start <= self.written_end, "log_start > written_end: {self:?}");
        debug_assert!(self.durable_end <= self.written_end, "durable_end > written_end: {self:?}");
        debug_assert!(self.written_end <= self.appended_end, "written_end > appended_end: {self:?}");
        debug_assert!(self.visible_end <= self.appended_end, "visible_end > appended_end: {self:?}");
    }

    pub fn log_start(&self) -> Offset {
        self.log_start
    }
    pub fn durable_end(&self) -> Offset {
        self.durable_end
    }
    pub fn written_end(&self) -> Offset {
        self.written_end
    }
    pub fn appended_end(&self) -> Offset {
        self.appended_end
    }
    pub fn visible_end(&self) -> Offset {
        self.visible_end
    }
    /// One past the last offset a reader may read from the file itself (the rest of the
    /// visible log is in memory only).
    pub fn readable_on_disk_end(&self) -> Offset {
        self.visible_end.min(self.written_end)
    }

    pub fn advance_appended(&mut self, to: Offset) {
        debug_assert!(to >= self.appended_end, "appended_end moved back: {to} < {self:?}");
        self.appended_end = to;
        self.check();
    }

    pub fn advance_written(&mut self, to: Offset) {
        debug_assert!(to >= self.written_end, "written_end moved back: {to} < {self:?}");
        self.written_end = to;
        self.check();
    }

    pub fn advance_durable(&mut self, to: Offset) {
        debug_assert!(to >= self.durable_end, "durable_end moved back: {to} < {self:?}");
        self.durable_end = to;
        self.check();
    }

    pub fn advance_visible(&mut self, to: Offset) {
        debug_assert!(to >= self.visible_end, "visible_end moved back: {to} < {self:?}");
        self.visible_end = to;
        self.check();
    }

    pub fn advance_log_start(&mut self, to: Offset) {
        debug_assert!(to >= self.log_start, "log_start moved back: {to} < {self:?}");
        self.log_start = to;
        self.check();
    }
}
