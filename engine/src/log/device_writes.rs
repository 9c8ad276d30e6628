//! The shard's log writes still in the device, oldest first. A replay that finds one held
//! up there stops issuing reads until it lands: the block layer's deadline scheduler serves
//! reads first, and behind a replay reading at the disk's full speed a live append's write
//! waited 100-460 ms (and, below `sync`, the appends behind it for their visibility).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

thread_local! {
    /// (the next write's number, start of every write in the device by number).
    static IN_DEVICE: RefCell<(u64, BTreeMap<u64, Instant>)> = const { RefCell::new((0, BTreeMap::new())) };
}

/// A write in the device from its creation until it is dropped.
pub(crate) struct WriteInDevice(u64);

impl WriteInDevice {
    pub(crate) fn enter() -> Self {
        IN_DEVICE.with(|d| {
            let mut d = d.borrow_mut();
            let n = d.0;
            d.0 += 1;
            d.1.insert(n, Instant::now());
            WriteInDevice(n)
        })
    }
}

impl Drop for WriteInDevice {
    fn drop(&mut self) {
        IN_DEVICE.with(|d| d.borrow_mut().1.remove(&self.0));
    }
}

/// How long the oldest log write of this shard still in the device has been there.
pub fn oldest_write_age() -> Option<Duration> {
    IN_DEVICE.with(|d| d.borrow().1.first_key_value().map(|(_, started)| started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_write_still_in_the_device_is_the_one_aged() {
        assert_eq!(oldest_write_age(), None);
        let first = WriteInDevice::enter();
        std::thread::sleep(Duration::from_millis(20));
        let second = WriteInDevice::enter();
        assert!(oldest_write_age().is_some_and(|age| age >= Duration::from_millis(20)));
        drop(first);
        assert!(oldest_write_age().is_some_and(|age| age < Duration::from_millis(20)));
        drop(second);
        assert_eq!(oldest_write_age(), None);
    }
}
