//! A bounded single-shard queue: a full queue suspends the producer (backpressure) and
//! the consumer drains whole groups at once (the basis of group commit).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use event_listener::Event;

pub struct BoundedQueue<T> {
    items: RefCell<VecDeque<T>>,
    capacity: usize,
    not_empty: Event,
    not_full: Event,
    closed: Cell<bool>,
}

impl<T> BoundedQueue<T> {
    pub fn new(capacity: usize) -> Self {
        debug_assert!(capacity > 0);
        BoundedQueue {
            items: RefCell::new(VecDeque::new()),
            capacity,
            not_empty: Event::new(),
            not_full: Event::new(),
            closed: Cell::new(false),
        }
    }

    /// Waits for room, then enqueues. Gives the item back if the queue is closed.
    pub async fn push(&self, item: T) -> Result<(), T> {
        loop {
            if self.closed.get() {
                return Err(item);
            }
            if self.items.borrow().len() < self.capacity {
                self.items.borrow_mut().push_back(item);
                self.not_empty.notify(1);
                return Ok(());
            }
            let listener = self.not_full.listen();
            if self.items.borrow().len() < self.capacity || self.closed.get() {
                continue;
            }
            listener.await;
        }
    }

    /// Waits for at least one item, then moves items into `out` while their total weight
    /// stays within `weight_max` (always at least one). Returns false once the queue is
    /// closed and empty.
    pub async fn pop_group(&self, out: &mut Vec<T>, weight_max: usize, weigh: impl Fn(&T) -> usize) -> bool {
        loop {
            {
                let mut items = self.items.borrow_mut();
                if !items.is_empty() {
                    let mut weight = 0;
                    while let Some(front) = items.front() {
                        let w = weigh(front);
                        if !out.is_empty() && weight + w > weight_max {
                            break;
                        }
                        weight += w;
                        out.extend(items.pop_front());
                    }
                    drop(items);
                    self.not_full.notify(usize::MAX);
                    return true;
                }
                if self.closed.get() {
                    return false;
                }
            }
            let listener = self.not_empty.listen();
            if !self.items.borrow().is_empty() || self.closed.get() {
                continue;
            }
            listener.await;
        }
    }

    /// Refuses new items; the consumer still drains what is queued.
    pub fn close(&self) {
        self.closed.set(true);
        self.not_empty.notify(usize::MAX);
        self.not_full.notify(usize::MAX);
    }

    pub fn len(&self) -> usize {
        self.items.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.borrow().is_empty()
    }
}
