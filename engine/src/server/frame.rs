//! Reading a length-prefixed frame's body, for the native and Kafka listeners.
//!
//! Promise: the buffer grows with the bytes that actually arrive (doubling from
//! [`FRAME_READ_CHUNK_BYTES`]), so a peer that announces a 100 MiB frame and then sends
//! nothing holds one chunk, not 100 MiB per connection.

use futures_lite::{AsyncRead, AsyncReadExt};

use crate::limits::FRAME_READ_CHUNK_BYTES;

/// A growable byte buffer a frame body is read into.
pub(crate) trait FrameBuf {
    fn filled(&self) -> usize;
    /// Grows to `len` bytes, the new ones zero.
    fn grow_zeroed(&mut self, len: usize);
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl FrameBuf for rkyv::util::AlignedVec {
    fn filled(&self) -> usize {
        self.len()
    }
    fn grow_zeroed(&mut self, len: usize) {
        self.resize(len, 0);
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl FrameBuf for bytes::BytesMut {
    fn filled(&self) -> usize {
        self.len()
    }
    fn grow_zeroed(&mut self, len: usize) {
        self.resize(len, 0);
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self[..]
    }
}

/// Appends exactly `len` bytes from `reader` to `buf` (empty on entry). Errors as
/// `read_exact` does (the peer closed mid-frame).
pub(crate) async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut impl FrameBuf,
    len: usize,
) -> std::io::Result<()> {
    debug_assert_eq!(buf.filled(), 0);
    let mut have = 0;
    while have < len {
        let next = len.min(have.max(FRAME_READ_CHUNK_BYTES / 2) * 2);
        buf.grow_zeroed(next);
        reader.read_exact(&mut buf.bytes_mut()[have..next]).await?;
        have = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_exactly_the_frame() {
        for len in [0, 1, FRAME_READ_CHUNK_BYTES - 1, FRAME_READ_CHUNK_BYTES, 5 * FRAME_READ_CHUNK_BYTES + 3] {
            let data: Vec<u8> = (0..len + 10).map(|i| i as u8).collect();
            let mut reader = futures_lite::io::Cursor::new(data.clone());
            let mut buf = bytes::BytesMut::new();
            futures_lite::future::block_on(read_body(&mut reader, &mut buf, len)).expect("enough bytes");
            assert_eq!(&buf[..], &data[..len]);
        }
        // The peer closes mid-frame: an error, having held no more than it sent, doubled.
        let mut reader = futures_lite::io::Cursor::new(vec![7u8; 100]);
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        assert!(futures_lite::future::block_on(read_body(&mut reader, &mut buf, 100 << 20)).is_err());
        assert!(buf.capacity() <= 2 * FRAME_READ_CHUNK_BYTES);
    }
}
