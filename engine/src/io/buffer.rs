//! Block-aligned buffers for writes ([`IoBuf`], [`SharedBuf`]) and reads ([`ReadBuf`]).
//!
//! DMA buffers come from glommio's pool; the simulated disk uses [`AlignedHeap`] so that
//! archived rkyv data read from it is as aligned as data read from the real disk.

use std::alloc::Layout;
use std::ops::Deref;
use std::rc::Rc;

use glommio::io::{DmaBuffer, ReadResult};

use crate::limits::BLOCK_BYTES;

/// A heap allocation aligned to [`BLOCK_BYTES`], every byte initialised.
pub struct AlignedHeap {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl AlignedHeap {
    pub fn zeroed(len: usize) -> Self {
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size (at least one block).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        AlignedHeap { ptr, len }
    }

    /// `parts` one after the other in a buffer of `len` bytes (at least their sum), the
    /// rest zeroed: written once, not zeroed first (a batch stitched from two reads).
    pub fn concat(parts: &[&[u8]], len: usize) -> Self {
        let used: usize = parts.iter().map(|p| p.len()).sum();
        assert!(used <= len, "parts of {used} bytes in a buffer of {len}");
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size (at least one block).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(raw) else { std::alloc::handle_alloc_error(layout) };
        let mut at = 0;
        for part in parts {
            // SAFETY: `at + part.len() <= used <= len`, inside the allocation, which no
            // slice can overlap (it is new).
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), ptr.as_ptr().add(at), part.len()) };
            at += part.len();
        }
        // SAFETY: `[used, len)` is inside the allocation; after this every byte is initialised.
        unsafe { std::ptr::write_bytes(ptr.as_ptr().add(used), 0, len - used) };
        AlignedHeap { ptr, len }
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut heap = Self::zeroed(bytes.len());
        heap.as_mut_slice().copy_from_slice(bytes);
        heap
    }

    fn layout(len: usize) -> Layout {
        // A zero-length buffer still allocates one block so the pointer is always valid.
        Layout::from_size_align(len.max(BLOCK_BYTES), BLOCK_BYTES).expect("block layout")
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised (zeroed) bytes for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedHeap {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` or `concat` with this exact layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

/// A buffer to be written.
pub enum IoBuf {
    Dma(DmaBuffer),
    Heap(AlignedHeap),
}

impl IoBuf {
    /// A DMA buffer with undefined content: the caller writes every byte it will write.
    pub(crate) fn dma(len: usize) -> Self {
        IoBuf::Dma(glommio::allocate_dma_buffer(len))
    }

    pub fn len(&self) -> usize {
        match self {
            IoBuf::Dma(b) => b.len(),
            IoBuf::Heap(b) => b.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            IoBuf::Dma(b) => b.as_bytes(),
            IoBuf::Heap(b) => b.as_slice(),
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            IoBuf::Dma(b) => b.as_bytes_mut(),
            IoBuf::Heap(b) => b.as_mut_slice(),
        }
    }

    /// Freezes a filled buffer so that the write and readers of what it holds can share it.
    pub fn share(self) -> SharedBuf {
        match self {
            IoBuf::Dma(b) => SharedBuf::Dma(Rc::new(b)),
            IoBuf::Heap(b) => SharedBuf::Heap(Rc::new(b)),
        }
    }
}

/// A filled write buffer, no longer written to: shared by the write in flight and by
/// readers of its bytes (the log's tail cache), without a copy.
#[derive(Clone)]
pub enum SharedBuf {
    Dma(Rc<DmaBuffer>),
    Heap(Rc<AlignedHeap>),
}

impl SharedBuf {
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            SharedBuf::Dma(b) => b.as_bytes(),
            SharedBuf::Heap(b) => b.as_slice(),
        }
    }

    /// A read view of `len` bytes at `offset`, sharing the allocation. `None` when out of range.
    pub fn slice(&self, offset: usize, len: usize) -> Option<ReadBuf> {
        if offset.checked_add(len)? > self.len() {
            return None;
        }
        Some(match self {
            SharedBuf::Dma(buf) => ReadBuf::Written { buf: buf.clone(), start: offset, len },
            SharedBuf::Heap(buf) => ReadBuf::Heap { buf: buf.clone(), start: offset, len },
        })
    }
}

impl From<IoBuf> for SharedBuf {
    fn from(buf: IoBuf) -> Self {
        buf.share()
    }
}

/// Bytes read from a file (or still held from their write), aligned to the block at their
/// start. Cheap to clone and slice.
#[derive(Clone)]
pub enum ReadBuf {
    Dma(ReadResult),
    Heap { buf: Rc<AlignedHeap>, start: usize, len: usize },
    Written { buf: Rc<DmaBuffer>, start: usize, len: usize },
}

impl ReadBuf {
    pub fn empty() -> Self {
        ReadBuf::Heap { buf: Rc::new(AlignedHeap::zeroed(0)), start: 0, len: 0 }
    }

    pub fn from_heap(heap: AlignedHeap) -> Self {
        let len = heap.len;
        ReadBuf::Heap { buf: Rc::new(heap), start: 0, len }
    }

    /// A view of `len` bytes at `offset`, sharing the allocation. `None` when out of range.
    pub fn slice(&self, offset: usize, len: usize) -> Option<ReadBuf> {
        let end = offset.checked_add(len)?;
        if end > self.len() {
            return None;
        }
        match self {
            ReadBuf::Dma(r) => ReadResult::slice(r, offset, len).map(ReadBuf::Dma),
            ReadBuf::Heap { buf, start, .. } => Some(ReadBuf::Heap { buf: buf.clone(), start: start + offset, len }),
            ReadBuf::Written { buf, start, .. } => {
                Some(ReadBuf::Written { buf: buf.clone(), start: start + offset, len })
            }
        }
    }
}

impl Deref for ReadBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ReadBuf::Dma(r) => r,
            ReadBuf::Heap { buf, start, len } => &buf.as_slice()[*start..*start + *len],
            ReadBuf::Written { buf, start, len } => &buf.as_bytes()[*start..*start + *len],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_writes_the_parts_in_order_and_zeroes_the_rest() {
        let a: Vec<u8> = (0..3_000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..2_000u32).map(|i| (i % 13) as u8 + 1).collect();
        let heap = AlignedHeap::concat(&[&a, &b], 2 * BLOCK_BYTES);
        let s = heap.as_slice();
        assert_eq!(s.as_ptr() as usize % BLOCK_BYTES, 0);
        assert_eq!(&s[..a.len()], &a[..]);
        assert_eq!(&s[a.len()..a.len() + b.len()], &b[..]);
        assert!(s[a.len() + b.len()..].iter().all(|&x| x == 0));
    }
}
