//! The network yardstick: what one loopback round trip costs on this machine between the
//! CPUs a benchmark puts the server and its client on. A lookup or a produce-to-lookup
//! latency can be no shorter than this, whatever the server does.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::events::pin_self;

/// Bytes of each request and reply: about a small pgwire lookup.
const MESSAGE_BYTES: usize = 64;

/// Round-trip times in nanoseconds of `round_trips` blocking request/reply exchanges over
/// one loopback TCP connection, the echoing thread pinned to `server_cpu` and the caller
/// to `client_cpu` (where it stays pinned afterwards).
/// The first tenth warms up and is not recorded.
pub fn loopback_round_trip_ns(
    server_cpu: usize,
    client_cpu: usize,
    round_trips: usize,
) -> std::io::Result<Histogram<u64>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        pin_self(server_cpu);
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; MESSAGE_BYTES];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    pin_self(client_cpu);
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut h = Histogram::<u64>::new(3).map_err(std::io::Error::other)?;
    let mut buf = [7u8; MESSAGE_BYTES];
    let warm_up = round_trips / 10;
    for i in 0..round_trips + warm_up {
        let t = Instant::now();
        c.write_all(&buf)?;
        c.read_exact(&mut buf)?;
        if i >= warm_up {
            h.record(t.elapsed().as_nanos() as u64).map_err(std::io::Error::other)?;
        }
    }
    drop(c);
    echo.join().map_err(|_| std::io::Error::other("echo thread panicked"))??;
    Ok(h)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_round_trip_is_recorded() {
        let h = super::loopback_round_trip_ns(0, 0, 200).expect("round trips");
        assert_eq!(h.len(), 200);
        // A loopback round trip takes microseconds, not nanoseconds.
        assert!(h.value_at_quantile(0.5) > 1_000, "p50 {} ns", h.value_at_quantile(0.5));
    }
}
