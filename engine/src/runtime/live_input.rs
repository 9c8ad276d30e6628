//! Whether live network input waits on this shard, known without a system call.
//!
//! Every connection the shard accepts is in one epoll set; a one-shot poll of that set
//! sits in a small io_uring of the shard's own, and its completion queue (memory shared
//! with the kernel) says whether a socket became readable since the poll was armed.
//! Work done in slices (a replay) looks between slices and steps aside the moment a
//! request arrives, instead of after a fixed run: glommio finds socket readiness only
//! when its reactor runs, and `need_preempt` does not see it.
//!
//! Promise: a false "waiting" costs one step aside, a missed one only the fixed run
//! (`REPLAY_RUN_US`); with no ring (io_uring refused) nothing is ever waiting.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types, IoUring};

/// Entries of the shard's readiness ring: one poll is ever in it.
const LIVE_INPUT_RING_ENTRIES: u32 = 4;

struct LiveInput {
    ring: IoUring,
    epoll: OwnedFd,
    /// The poll is in the ring (and has not completed, or its completion is unread).
    armed: bool,
}

thread_local! {
    static LIVE_INPUT: RefCell<Option<LiveInput>> = RefCell::new(LiveInput::new());
}

impl LiveInput {
    fn new() -> Option<LiveInput> {
        // SAFETY: epoll_create1 takes no pointers; a valid fd is owned from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "no epoll set for live input");
            return None;
        }
        // SAFETY: fd was just created and nothing else owns it.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        match IoUring::new(LIVE_INPUT_RING_ENTRIES) {
            Ok(ring) => Some(LiveInput { epoll, ring, armed: false }),
            Err(e) => {
                tracing::debug!(error = %e, "no io_uring for live input; replays step aside on time only");
                None
            }
        }
    }

    fn arm(&mut self) {
        let poll = opcode::PollAdd::new(types::Fd(self.epoll.as_raw_fd()), libc::POLLIN as u32).build();
        // SAFETY: the poll refers to the epoll fd only, which outlives the ring (both are
        // dropped together, the ring first: field order).
        let pushed = unsafe { self.ring.submission().push(&poll) }.is_ok();
        self.armed = pushed && self.ring.submit().is_ok();
    }
}

/// Watches a connection's socket for input (until it is closed: closing the socket
/// takes it out of the set).
pub fn watch(fd: RawFd) {
    LIVE_INPUT.with(|l| {
        if let Some(l) = l.borrow().as_ref() {
            let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
            // SAFETY: valid fds and a live event struct; failure only means not watched.
            let added = unsafe { libc::epoll_ctl(l.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
            if added < 0 {
                tracing::debug!(fd, error = %std::io::Error::last_os_error(), "socket not watched for live input");
            }
        }
    });
}

/// True if a watched socket became readable since the last `stepped_aside`: live
/// requests wait for this shard's loop. One load of shared memory while nothing arrived
/// (the poll is armed once, here, when it is not).
pub fn waiting() -> bool {
    LIVE_INPUT.with(|l| {
        let mut guard = l.borrow_mut();
        let Some(l) = guard.as_mut() else { return false };
        if !l.armed {
            l.arm();
        }
        let waiting = !l.ring.completion().is_empty();
        waiting
    })
}

/// The caller stepped aside for the input `waiting` saw: the poll's completion is taken,
/// and the next `waiting` arms a new one (which completes at once if input is still unread).
pub fn stepped_aside() {
    LIVE_INPUT.with(|l| {
        let mut guard = l.borrow_mut();
        let Some(l) = guard.as_mut() else { return };
        if l.ring.completion().next().is_some() {
            l.armed = false;
        }
    });
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use super::*;

    /// Polls `waiting` until it says `want` or a second passes (the kernel posts the
    /// poll's completion on its own time).
    fn settles_to(want: bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            if waiting() == want {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn sees_input_on_a_watched_socket_until_it_is_read() {
        if LIVE_INPUT.with(|l| l.borrow().is_none()) {
            eprintln!("no io_uring here: nothing to test");
            return;
        }
        let (mut server, mut client) = UnixStream::pair().expect("socket pair");
        let (_quiet_server, _quiet_client) = UnixStream::pair().expect("socket pair");
        watch(server.as_raw_fd());
        watch(_quiet_server.as_raw_fd());
        assert!(!waiting(), "nothing was sent");
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiting(), "nothing was sent");

        client.write_all(b"request").expect("send");
        assert!(settles_to(true), "a request arrived");
        // Not read yet: stepping aside re-arms, and the new poll sees it again.
        stepped_aside();
        assert!(settles_to(true), "the request is still unread");

        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).expect("read"), 7);
        stepped_aside();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiting(), "the request was read");

        // A closed socket leaves the set: its end of stream is not input.
        client.write_all(b"x").expect("send");
        drop(server);
        stepped_aside();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiting(), "the socket was closed");
    }
}
