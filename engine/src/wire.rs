//! Little-endian binary encoding shared by the native protocol and metadata files.
//!
//! The decoder never panics and never allocates more than the input it was given:
//! every length is checked against the bytes that remain before it is used.

/// A decoding failure; says what was being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated input while reading {0}")]
    Truncated(&'static str),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("{0} bytes left over after the message")]
    Trailing(usize),
}

#[derive(Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder { buf: Vec::new() }
    }

    pub fn with_buf(buf: Vec<u8>) -> Self {
        Encoder { buf }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A u32 length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
    /// A u32 length, then the bytes `write` appends (no separate buffer for them).
    pub fn bytes_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let at = self.buf.len();
        self.u32(0);
        write(&mut self.buf);
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// Zero bytes until the length is a multiple of `align`.
    pub fn pad_to(&mut self, align: usize) -> &mut Self {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
        self
    }
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// A decoder that starts reading at `pos` (alignment is still relative to `buf`'s start).
    pub fn new_at(buf: &'a [u8], pos: usize) -> Self {
        Decoder { buf, pos: pos.min(buf.len()) }
    }

    /// The next `n` bytes, without a length prefix.
    pub fn raw_bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        self.take(n, "raw bytes")
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() - self.pos < n {
            return Err(WireError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1, "u8")?[0])
    }
    pub fn u16(&mut self) -> Result<u16, WireError> {
        self.array("u16").map(u16::from_le_bytes)
    }
    pub fn u32(&mut self) -> Result<u32, WireError> {
        self.array("u32").map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.array("u64").map(u64::from_le_bytes)
    }
    pub fn i64(&mut self) -> Result<i64, WireError> {
        self.array("i64").map(i64::from_le_bytes)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len, "bytes")
    }
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError::Invalid("utf-8 string"))
    }
    /// Skips zero padding up to a multiple of `align` (relative to the input's start).
    pub fn pad_to(&mut self, align: usize) -> Result<(), WireError> {
        while !self.pos.is_multiple_of(align) {
            if self.u8()? != 0 {
                return Err(WireError::Invalid("padding"));
            }
        }
        Ok(())
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Fails if anything is left unread.
    pub fn end(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// A small metadata file: magic, version, length, CRC32C of the body, then the body.
/// Used for topic metadata and durable watermarks; see docs/format.md.
pub fn encode_meta_file(magic: [u8; 4], version: u16, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0; META_FILE_HEADER_BYTES + body.len()];
    encode_meta_file_parts_into(magic, version, &[body], &mut out);
    out
}

/// Bytes of a metadata file's header (magic, version, reserved, length, CRC32C).
pub const META_FILE_HEADER_BYTES: usize = 16;

/// As [`encode_meta_file`], into `out`, with the body given in parts that are not joined
/// first (a checkpoint's multi-megabyte state goes straight into the write buffer).
/// `out` holds at least the header and the parts; what follows them is left as it is.
/// Returns the bytes written.
pub fn encode_meta_file_parts_into(magic: [u8; 4], version: u16, parts: &[&[u8]], out: &mut [u8]) -> usize {
    let mut at = META_FILE_HEADER_BYTES;
    let mut crc = 0;
    for part in parts {
        out[at..at + part.len()].copy_from_slice(part);
        crc = crc32c::crc32c_append(crc, part);
        at += part.len();
    }
    let len = (at - META_FILE_HEADER_BYTES) as u32;
    out[..4].copy_from_slice(&magic);
    out[4..6].copy_from_slice(&version.to_le_bytes());
    out[6..8].copy_from_slice(&[0, 0]);
    out[8..12].copy_from_slice(&len.to_le_bytes());
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    at
}

/// Checks and opens a metadata file written by [`encode_meta_file`]; returns its body.
pub fn decode_meta_file(magic: [u8; 4], version: u16, bytes: &[u8]) -> Result<&[u8], WireError> {
    decode_meta_file_versions(magic, version..=version, bytes).map(|(_, body)| body)
}

/// As [`decode_meta_file`] for a file that may be any of `versions`; returns the version too.
pub fn decode_meta_file_versions(
    magic: [u8; 4],
    versions: std::ops::RangeInclusive<u16>,
    bytes: &[u8],
) -> Result<(u16, &[u8]), WireError> {
    let mut d = Decoder::new(bytes);
    if d.take(4, "magic")? != magic {
        return Err(WireError::Invalid("magic"));
    }
    let version = d.u16()?;
    if !versions.contains(&version) {
        return Err(WireError::Invalid("version"));
    }
    let _reserved = d.u16()?;
    let len = d.u32()? as usize;
    let crc = d.u32()?;
    let body = d.take(len, "body")?;
    if crc32c::crc32c(body) != crc {
        return Err(WireError::Invalid("checksum"));
    }
    Ok((version, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_rejects_lengths_beyond_input() {
        let mut e = Encoder::new();
        e.u32(1_000_000);
        let b = e.finish();
        assert_eq!(Decoder::new(&b).bytes(), Err(WireError::Truncated("bytes")));
    }

    #[test]
    fn meta_file_detects_corruption() {
        let f = encode_meta_file(*b"TEST", 1, b"hello");
        assert_eq!(decode_meta_file(*b"TEST", 1, &f), Ok(&b"hello"[..]));
        let mut bad = f.clone();
        bad[17] ^= 1;
        assert!(decode_meta_file(*b"TEST", 1, &bad).is_err());
        assert!(decode_meta_file(*b"TEST", 2, &f).is_err());
    }
}
