//! A bounded single-shard queue: a full queue suspends the producer (backpressure) and
//! the consumer drains whole groups at once (the basis of group commit).
//!
//! Producers are served first come, first served: a push that had to wait keeps its place,
//! so requests that arrive in order (one client's pipelined appends to a partition) are
//! queued in that order even when the queue was full.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};

use event_listener::Event;

pub struct BoundedQueue<T> {
    items: RefCell<VecDeque<T>>,
    capacity: usize,
    not_empty: Event,
    not_full: Event,
    closed: Cell<bool>,
    /// Tickets of pushes: the next to hand out, and the one whose turn it is.
    next_ticket: Cell<u64>,
    serving: Cell<u64>,
    /// Tickets whose push was given up (its future dropped) before its turn.
    abandoned: RefCell<BTreeSet<u64>>,
}

/// A push's place in line; gives its turn up if the push is dropped while waiting.
struct Ticket<'a, T> {
    queue: &'a BoundedQueue<T>,
    number: u64,
    done: bool,
}

impl<T> Drop for Ticket<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            let q = self.queue;
            if q.serving.get() == self.number {
                q.advance_turn();
            } else {
                q.abandoned.borrow_mut().insert(self.number);
            }
            q.not_full.notify(usize::MAX);
        }
    }
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
            next_ticket: Cell::new(0),
            serving: Cell::new(0),
            abandoned: RefCell::new(BTreeSet::new()),
        }
    }

    /// Passes the turn to the next ticket still waiting.
    fn advance_turn(&self) {
        let mut next = self.serving.get() + 1;
        let mut abandoned = self.abandoned.borrow_mut();
        while abandoned.remove(&next) {
            next += 1;
        }
        self.serving.set(next);
    }

    /// Waits for its turn and for room, then enqueues. Gives the item back if the queue is closed.
    pub async fn push(&self, item: T) -> Result<(), T> {
        let number = self.next_ticket.get();
        self.next_ticket.set(number + 1);
        let mut ticket = Ticket { queue: self, number, done: false };
        loop {
            if self.closed.get() {
                return Err(item);
            }
            if self.serving.get() == number && self.items.borrow().len() < self.capacity {
                self.items.borrow_mut().push_back(item);
                ticket.done = true;
                self.advance_turn();
                self.not_empty.notify(1);
                // The next in line may find room too.
                self.not_full.notify(usize::MAX);
                return Ok(());
            }
            let listener = self.not_full.listen();
            if (self.serving.get() == number && self.items.borrow().len() < self.capacity) || self.closed.get() {
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
            self.wait_not_empty().await;
        }
    }

    /// Waits until an item is queued or the queue is closed (takes nothing).
    pub async fn wait_not_empty(&self) {
        loop {
            let listener = self.not_empty.listen();
            if !self.items.borrow().is_empty() || self.closed.get() {
                return;
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

    /// Looks at the item that would be popped next, if any.
    pub fn peek_front<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.items.borrow().front().map(f)
    }

    pub fn is_empty(&self) -> bool {
        self.items.borrow().is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }
}
