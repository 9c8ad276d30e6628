//! glommio's TCP stream as hyper's I/O, with a deadline on every read and write: a
//! client that stalls mid-request (slowloris) or stops reading is dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::timer::Timer;

pub struct HyperIo {
    stream: TcpStream,
    deadline: Duration,
    read_timer: Option<Timer>,
    write_timer: Option<Timer>,
}

impl HyperIo {
    pub fn new(stream: TcpStream, deadline: Duration) -> Self {
        HyperIo { stream, deadline, read_timer: None, write_timer: None }
    }
}

/// Ready(error) once `timer` (started at the first pending poll) fires.
fn expired(timer: &mut Option<Timer>, deadline: Duration, cx: &mut Context<'_>) -> bool {
    let t = timer.get_or_insert_with(|| Timer::new(deadline));
    Pin::new(t).poll(cx).is_ready()
}

impl hyper::rt::Read for HyperIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // SAFETY: the uninitialised tail is zeroed before it is handed out as `&mut [u8]`;
        // `advance` is called with exactly the bytes the read filled.
        let slice = unsafe {
            let raw = buf.as_mut();
            for b in raw.iter_mut() {
                b.write(0);
            }
            &mut *(raw as *mut [std::mem::MaybeUninit<u8>] as *mut [u8])
        };
        match Pin::new(&mut this.stream).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                this.read_timer = None;
                // SAFETY: `n` bytes were written by the read.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if expired(&mut this.read_timer, this.deadline, cx) {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client idle too long")));
                }
                Poll::Pending
            }
        }
    }
}

impl hyper::rt::Write for HyperIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Pending => {
                if expired(&mut this.write_timer, this.deadline, cx) {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")));
                }
                Poll::Pending
            }
            ready => {
                this.write_timer = None;
                ready
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}
