//! A ring of provided buffers (`IORING_REGISTER_PBUF_RING`, Linux 5.19+)
//! for the io_uring backend's multishot receives.
//!
//! The ring is an array of `io_uring_buf` entries shared with the kernel:
//! the program appends free buffers at the tail, the kernel takes one from
//! the head for each receive it completes and names it in the CQE's flags.
//! Both the entry array and the buffers are anonymous mappings, so the
//! buffers cost address space up front and memory only once the kernel has
//! written into them.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// One anonymous, private, read-write mapping of `len` bytes.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing refers to it any more
        // (the ring was unregistered, or never registered).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The buffer group of the backend's one ring.
pub(crate) const GROUP: u16 = 0;

/// A registered ring of `count` buffers of `size` bytes each.
pub(crate) struct BufRing {
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    size: u32,
    /// The next tail to publish (the kernel reads the published one).
    tail: u16,
}

impl BufRing {
    /// Maps the ring and its buffers, fills the ring with every buffer and
    /// registers it with `ring` as [`GROUP`]. `count` must be a power of
    /// two (as a `u16`, at most the kernel's limit of 32768), `size` at
    /// least 1: the driver's builder refuses anything else.
    pub fn new(ring: &IoUring, count: u16, size: u32) -> io::Result<BufRing> {
        debug_assert!(count.is_power_of_two() && size > 0, "checked by the builder");
        let entries = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Mapping::new(usize::from(count) * size as usize)?;
        let mut me = BufRing {
            entries,
            buffers,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            me.push(bid);
        }
        me.publish();
        // SAFETY: the entry array is a live, page-aligned mapping of `count`
        // entries that stays mapped until after `unregister` (the backend
        // unregisters before it drops the ring).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(me.entries.ptr as u64, count, GROUP, 0)?;
        }
        Ok(me)
    }

    /// Gives the ring up (the backend calls it once nothing is in flight).
    pub fn unregister(&self, ring: &IoUring) {
        let _ = ring.submitter().unregister_buf_ring(GROUP);
    }

    /// Writes buffer `bid` into the entry at the local tail.
    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index < count`, so the entry lies inside the mapping; the
        // kernel reads only entries before the published tail, and this
        // one is at or after it.
        let entry = unsafe { &mut *self.entries.ptr.cast::<BufRingEntry>().add(index) };
        entry.set_addr(self.buffer(bid) as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries pushed so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the `resv` field of the first entry, inside
        // the live mapping; the kernel reads it concurrently, hence the
        // atomic store (an `AtomicU16` has the layout of a `u16`).
        let tail = unsafe { &*BufRingEntry::tail(self.entries.ptr.cast()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Hands buffer `bid` back to the kernel.
    pub fn give_back(&mut self, bid: u16) {
        debug_assert!(bid < self.count, "a buffer id of this ring");
        self.push(bid);
        self.publish();
    }

    /// The start of buffer `bid`.
    fn buffer(&self, bid: u16) -> *mut u8 {
        // SAFETY: `bid < count`, so the offset stays inside the mapping.
        unsafe { self.buffers.ptr.add(usize::from(bid) * self.size as usize) }
    }

    /// The bytes `start..end` of buffer `bid`, which the kernel filled
    /// (a CQE named it) and has not been given back.
    pub fn bytes(&self, bid: u16, start: u32, end: u32) -> &[u8] {
        assert!(
            bid < self.count && start <= end && end <= self.size,
            "inside the buffer"
        );
        // SAFETY: inside buffer `bid` (asserted), which the kernel wrote
        // `end` bytes into before posting the CQE and does not touch again
        // until it is given back.
        unsafe { std::slice::from_raw_parts(self.buffer(bid).add(start as usize), (end - start) as usize) }
    }
}
