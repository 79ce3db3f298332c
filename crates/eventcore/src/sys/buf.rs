//! Owned I/O buffers: the traits a buffer type implements so the driver can
//! own it while the OS reads or writes its memory, and the one type-erased
//! form ([`AnyBuf`]) the driver keeps it in.
//!
//! The traits are `unsafe` to implement because the backends hand raw
//! pointers into the buffer to the kernel (io_uring, overlapped I/O) or to a
//! worker thread (file I/O on Unix) and keep using them after the value has
//! been moved into the driver: what an implementation promises is what makes
//! that sound. The common buffers are stored without a box; any other type
//! is boxed once.
//!
//! This module is in `sys/` because it holds unsafe code (the trait impls
//! and the one place a read's byte count becomes a buffer's length); it
//! knows nothing of the driver.

use std::any::{Any, TypeId};
use std::fmt;
use std::mem::ManuallyDrop;

/// A buffer the driver can send from: the write, send and vectored-write
/// calls take one and give it back with the result.
///
/// Implemented for `Vec<u8>`, `Box<[u8]>`, `String`, `&'static [u8]`,
/// `&'static str` and, with the `bytes` feature, `bytes::Bytes` and
/// `bytes::BytesMut`. Arrays by value are not buffers: their bytes move with
/// the value.
///
/// # Safety
///
/// While the driver owns the value, the memory [`io_bytes`](IoBuf::io_bytes)
/// returns must stay valid and unchanged even when the value itself is moved
/// (it lives on the heap or in static memory, not inside the value), and
/// repeated calls must return the same memory. The driver reads it from
/// other threads or from the kernel while it owns the value.
pub unsafe trait IoBuf: 'static {
    /// The bytes a write sends: the initialised part of the buffer.
    fn io_bytes(&self) -> &[u8];
}

/// A buffer the driver can read into: the read, receive and file-read calls
/// take one and give it back with the result.
///
/// A read fills the buffer's spare room and records what arrived: a
/// `Vec<u8>`, `String`-less byte vector or `BytesMut` is read into after its
/// current length, up to its capacity, and its length grows by the count
/// (`Vec::with_capacity(n)` works; nothing is zeroed first). A `Box<[u8]>`
/// has no spare room and no length to grow: a read overwrites it from the
/// start, and the count says how much is new.
///
/// Implemented for `Vec<u8>`, `Box<[u8]>` and, with the `bytes` feature,
/// `bytes::BytesMut`.
///
/// # Safety
///
/// While the driver owns the value, the memory [`io_spare`](IoBufMut::io_spare)
/// returns must stay valid for writes and must not move, even when the value
/// itself is moved, and repeated calls must return the same memory.
/// [`io_filled`](IoBufMut::io_filled) must accept any count up to the length
/// `io_spare` returned, once those bytes have been written.
pub unsafe trait IoBufMut: 'static {
    /// Where a read may put its bytes, and how many: the memory need not be
    /// initialised.
    fn io_spare(&mut self) -> (*mut u8, usize);

    /// Records that a read wrote the first `n` bytes of
    /// [`io_spare`](IoBufMut::io_spare).
    ///
    /// # Safety
    ///
    /// `n` is at most the length `io_spare` returned, and those bytes have
    /// been written.
    unsafe fn io_filled(&mut self, n: usize);
}

// SAFETY: a vector's bytes are on the heap (or dangling for capacity 0) and
// do not move when the `Vec` does; nothing reallocates while the driver owns it.
unsafe impl IoBuf for Vec<u8> {
    fn io_bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: as above; the spare capacity is heap memory owned by the vector.
unsafe impl IoBufMut for Vec<u8> {
    fn io_spare(&mut self) -> (*mut u8, usize) {
        let spare = self.spare_capacity_mut();
        (spare.as_mut_ptr().cast(), spare.len())
    }

    unsafe fn io_filled(&mut self, n: usize) {
        debug_assert!(n <= self.capacity() - self.len());
        // SAFETY: the caller wrote `n` bytes of the spare capacity, so the
        // first `len + n` bytes are initialised and within the capacity.
        unsafe { self.set_len(self.len() + n) }
    }
}

// SAFETY: a boxed slice is heap memory that does not move with the box.
unsafe impl IoBuf for Box<[u8]> {
    fn io_bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: as above; the whole (initialised) slice may be overwritten.
unsafe impl IoBufMut for Box<[u8]> {
    fn io_spare(&mut self) -> (*mut u8, usize) {
        (self.as_mut_ptr(), self.len())
    }

    unsafe fn io_filled(&mut self, _: usize) {}
}

// SAFETY: a string's bytes are on the heap and never written by the driver.
unsafe impl IoBuf for String {
    fn io_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

// SAFETY: static memory never moves.
unsafe impl IoBuf for &'static [u8] {
    fn io_bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: static memory never moves.
unsafe impl IoBuf for &'static str {
    fn io_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(feature = "bytes")]
// SAFETY: a `Bytes` points at shared heap or static memory that is immutable
// and outlives every handle to it; moving the handle moves no bytes.
unsafe impl IoBuf for bytes::Bytes {
    fn io_bytes(&self) -> &[u8] {
        self
    }
}

#[cfg(feature = "bytes")]
// SAFETY: a `BytesMut` owns heap memory that does not move with the value;
// nothing reserves while the driver owns it.
unsafe impl IoBuf for bytes::BytesMut {
    fn io_bytes(&self) -> &[u8] {
        self
    }
}

#[cfg(feature = "bytes")]
// SAFETY: as above; the spare capacity belongs to this `BytesMut`.
unsafe impl IoBufMut for bytes::BytesMut {
    fn io_spare(&mut self) -> (*mut u8, usize) {
        let spare = self.spare_capacity_mut();
        (spare.as_mut_ptr().cast(), spare.len())
    }

    unsafe fn io_filled(&mut self, n: usize) {
        debug_assert!(n <= self.capacity() - self.len());
        // SAFETY: the caller wrote `n` bytes of the spare capacity.
        unsafe { self.set_len(self.len() + n) }
    }
}

/// Reads into the spare room of `b` with `read`, which gets the room's
/// address and length and returns how many bytes it put there; the buffer's
/// length grows by that (clamped to the room).
///
/// `read` must report what it really wrote into that memory (a system call's
/// count): that is what makes those bytes initialised.
pub(crate) fn fill_spare<B: IoBufMut + ?Sized, E>(
    b: &mut B,
    read: impl FnOnce(*mut u8, usize) -> Result<usize, E>,
) -> Result<usize, E> {
    let (ptr, len) = b.io_spare();
    let n = read(ptr, len)?.min(len);
    // SAFETY: `n` is within the room `io_spare` returned, and `read`
    // reported those bytes as written.
    unsafe { b.io_filled(n) };
    Ok(n)
}

/// What the driver needs of a boxed buffer of another type.
trait Erased: 'static {
    /// The bytes a write sends (nothing for a buffer that is only read into).
    fn bytes(&self) -> &[u8];
    /// The room a read fills (none for a buffer that is only written).
    fn spare(&mut self) -> (*mut u8, usize);
    /// # Safety
    /// As [`IoBufMut::io_filled`].
    unsafe fn filled(&mut self, n: usize);
    /// Moves the buffer into `out` if `out` is an `Option` of its type;
    /// otherwise gives itself back.
    fn take_into(self: Box<Self>, out: &mut dyn Any) -> Option<Box<dyn Erased>>;
}

/// A boxed buffer that is written from.
struct Written<T>(T);
/// A boxed buffer that is read into.
struct ReadInto<T>(T);

impl<T: IoBuf> Erased for Written<T> {
    fn bytes(&self) -> &[u8] {
        self.0.io_bytes()
    }
    fn spare(&mut self) -> (*mut u8, usize) {
        (std::ptr::null_mut(), 0)
    }
    unsafe fn filled(&mut self, _: usize) {}
    fn take_into(self: Box<Self>, out: &mut dyn Any) -> Option<Box<dyn Erased>> {
        match out.downcast_mut::<Option<T>>() {
            Some(o) => {
                *o = Some(self.0);
                None
            }
            None => Some(self),
        }
    }
}

impl<T: IoBufMut> Erased for ReadInto<T> {
    fn bytes(&self) -> &[u8] {
        &[]
    }
    fn spare(&mut self) -> (*mut u8, usize) {
        self.0.io_spare()
    }
    unsafe fn filled(&mut self, n: usize) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.0.io_filled(n) }
    }
    fn take_into(self: Box<Self>, out: &mut dyn Any) -> Option<Box<dyn Erased>> {
        match out.downcast_mut::<Option<T>>() {
            Some(o) => {
                *o = Some(self.0);
                None
            }
            None => Some(self),
        }
    }
}

/// A buffer of any type as the driver keeps it: what a cancel gives back
/// ([`Cancelled::buffer`](crate::Cancelled::buffer)). Turn it back into the
/// type that went in with [`AnyBuf::downcast`].
pub struct AnyBuf(Inner);

enum Inner {
    Vec(Vec<u8>),
    Boxed(Box<[u8]>),
    Static(&'static [u8]),
    StaticStr(&'static str),
    #[cfg(feature = "bytes")]
    Bytes(bytes::Bytes),
    #[cfg(feature = "bytes")]
    BytesMut(bytes::BytesMut),
    /// The buffers of a vectored write, with the slice array the OS reads.
    List(Box<List>),
    /// Any other type (a `String`, a program's own buffer), boxed.
    Other(Box<dyn Erased>),
}

/// `a` as a `B`, if `A` and `B` are the same type (a check the compiler
/// resolves when it instantiates the function: no cost at run time).
#[inline(always)]
fn cast<A: 'static, B: 'static>(a: A) -> Result<B, A> {
    if TypeId::of::<A>() == TypeId::of::<B>() {
        let a = ManuallyDrop::new(a);
        // SAFETY: `A` and `B` are the same type (their `TypeId`s are
        // equal), so this is a move of the value; `a` is not dropped.
        Ok(unsafe { std::mem::transmute_copy::<A, B>(&a) })
    } else {
        Err(a)
    }
}

/// Moves `$value` (of the generic type `$t`) into the variant whose type
/// matches, if one does; evaluates to the value back otherwise.
macro_rules! store_as {
    ($value:ident: $t:ty; $($variant:ident($ty:ty)),*) => {{
        let value = $value;
        $(
            let value = match cast::<$t, $ty>(value) {
                Ok(v) => return AnyBuf(Inner::$variant(v)),
                Err(v) => v,
            };
        )*
        value
    }};
}

impl AnyBuf {
    /// An empty buffer (a wait that moves no bytes).
    #[inline]
    pub(crate) fn empty() -> AnyBuf {
        AnyBuf(Inner::Vec(Vec::new()))
    }

    /// Keeps `b` for a write.
    #[inline]
    pub(crate) fn for_write<B: IoBuf>(b: B) -> AnyBuf {
        let b = store_as!(b: B; Vec(Vec<u8>), Boxed(Box<[u8]>), Static(&'static [u8]), StaticStr(&'static str));
        #[cfg(feature = "bytes")]
        let b = store_as!(b: B; Bytes(bytes::Bytes), BytesMut(bytes::BytesMut));
        AnyBuf(Inner::Other(Box::new(Written(b))))
    }

    /// Keeps `b` for a read.
    #[inline]
    pub(crate) fn for_read<B: IoBufMut>(b: B) -> AnyBuf {
        let b = store_as!(b: B; Vec(Vec<u8>), Boxed(Box<[u8]>));
        #[cfg(feature = "bytes")]
        let b = store_as!(b: B; BytesMut(bytes::BytesMut));
        AnyBuf(Inner::Other(Box::new(ReadInto(b))))
    }

    /// Keeps the buffers of a vectored write.
    pub(crate) fn for_write_list<B: IoBuf>(bufs: Vec<B>) -> AnyBuf {
        let bufs: Vec<AnyBuf> = bufs.into_iter().map(AnyBuf::for_write).collect();
        AnyBuf(Inner::List(Box::new(List {
            bufs,
            slices: Vec::new(),
        })))
    }

    /// The buffer as the type that went in, or itself if `B` is not that
    /// type.
    #[inline(always)]
    pub fn downcast<B: 'static>(self) -> Result<B, AnyBuf> {
        /// `$v` as a `B` if `B` is `$ty`; else the buffer back.
        macro_rules! back {
            ($variant:ident, $v:ident: $ty:ty) => {
                cast::<$ty, B>($v).map_err(|v| AnyBuf(Inner::$variant(v)))
            };
        }
        match self.0 {
            Inner::Vec(v) => back!(Vec, v: Vec<u8>),
            Inner::Boxed(v) => back!(Boxed, v: Box<[u8]>),
            Inner::Static(v) => back!(Static, v: &'static [u8]),
            Inner::StaticStr(v) => back!(StaticStr, v: &'static str),
            #[cfg(feature = "bytes")]
            Inner::Bytes(v) => back!(Bytes, v: bytes::Bytes),
            #[cfg(feature = "bytes")]
            Inner::BytesMut(v) => back!(BytesMut, v: bytes::BytesMut),
            Inner::List(list) => Err(AnyBuf(Inner::List(list))),
            Inner::Other(v) => {
                let mut out: Option<B> = None;
                match v.take_into(&mut out) {
                    Some(v) => Err(AnyBuf(Inner::Other(v))),
                    None => Ok(out.expect("stored by take_into")),
                }
            }
        }
    }

    /// The buffers of a vectored write, each as the type that went in.
    pub(crate) fn downcast_list<B: 'static>(self) -> Result<Vec<B>, AnyBuf> {
        match self.0 {
            Inner::List(list) => {
                let mut out = Vec::with_capacity(list.bufs.len());
                for b in list.bufs {
                    out.push(b.downcast::<B>()?);
                }
                Ok(out)
            }
            other => Err(AnyBuf(other)),
        }
    }

    /// The bytes a write sends (all of them, for a list).
    #[inline]
    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Inner::Vec(v) => v,
            Inner::Boxed(v) => v,
            Inner::Static(v) => v,
            Inner::StaticStr(v) => v.as_bytes(),
            #[cfg(feature = "bytes")]
            Inner::Bytes(v) => v,
            #[cfg(feature = "bytes")]
            Inner::BytesMut(v) => v,
            Inner::List(_) => &[],
            Inner::Other(v) => v.bytes(),
        }
    }

    /// The room a read fills.
    #[inline]
    fn spare(&mut self) -> (*mut u8, usize) {
        match &mut self.0 {
            Inner::Vec(v) => v.io_spare(),
            Inner::Boxed(v) => v.io_spare(),
            #[cfg(feature = "bytes")]
            Inner::BytesMut(v) => v.io_spare(),
            Inner::Other(v) => v.spare(),
            _ => (std::ptr::null_mut(), 0),
        }
    }

    /// How many bytes the operation can move in all: the bytes to write, or
    /// the room to read into.
    #[inline]
    pub(crate) fn capacity_for(&mut self, reading: bool) -> usize {
        if let Inner::Vec(v) = &self.0 {
            return if reading { v.capacity() - v.len() } else { v.len() };
        }
        self.capacity_slow(reading)
    }

    #[cold]
    fn capacity_slow(&mut self, reading: bool) -> usize {
        match (&self.0, reading) {
            (Inner::List(list), _) => list.bufs.iter().map(|b| b.bytes().len()).sum(),
            (_, true) => self.spare().1,
            (_, false) => self.bytes().len(),
        }
    }

    /// Whether a read has no room at all because the buffer holds nothing
    /// and has no capacity (a wait for data) rather than because it is full.
    #[inline(always)]
    pub(crate) fn is_unallocated(&mut self) -> bool {
        if let Inner::Vec(v) = &self.0 {
            return v.capacity() == 0;
        }
        self.is_unallocated_slow()
    }

    #[inline(never)]
    fn is_unallocated_slow(&mut self) -> bool {
        match &self.0 {
            Inner::Vec(v) => v.capacity() == 0,
            #[cfg(feature = "bytes")]
            Inner::BytesMut(v) => v.capacity() == 0,
            Inner::Boxed(v) => v.is_empty(),
            _ => self.spare().1 == 0,
        }
    }

    /// The memory the operation moves next, after the first `done` bytes:
    /// the rest of the spare room for a read, the rest of the bytes for a
    /// write (not for a list: see [`write_slices`](AnyBuf::write_slices)).
    #[inline(always)]
    pub(crate) fn window(&mut self, reading: bool, done: usize) -> (*mut u8, usize) {
        if let Inner::Vec(v) = &mut self.0 {
            let (len, cap) = (v.len(), v.capacity());
            let (start, end) = if reading { (len, cap) } else { (0, len) };
            let at = (start + done).min(end);
            // In bounds of the allocation (or zero on a dangling pointer);
            // nothing is dereferenced here.
            return (v.as_mut_ptr().wrapping_add(at), end - at);
        }
        self.window_slow(reading, done)
    }

    #[inline(never)]
    fn window_slow(&mut self, reading: bool, done: usize) -> (*mut u8, usize) {
        if reading {
            self.read_window(done)
        } else {
            let b = self.write_window(done);
            (b.as_ptr().cast_mut(), b.len())
        }
    }

    /// Whether this is a vectored write's list.
    #[inline(always)]
    pub(crate) fn is_list(&self) -> bool {
        matches!(self.0, Inner::List(_))
    }

    /// The memory a read puts its bytes into after the first `done`.
    #[inline]
    pub(crate) fn read_window(&mut self, done: usize) -> (*mut u8, usize) {
        let (ptr, len) = self.spare();
        let done = done.min(len);
        // `wrapping_add`: the offset is within the spare room (or zero on a
        // null pointer), so the result is in bounds; nothing is dereferenced here.
        (ptr.wrapping_add(done), len - done)
    }

    /// The bytes a write sends after the first `done`.
    #[inline]
    pub(crate) fn write_window(&self, done: usize) -> &[u8] {
        let b = self.bytes();
        &b[done.min(b.len())..]
    }

    /// The slices of a vectored write after the first `done` bytes, rebuilt
    /// in the list's own array (which the OS reads while the write is
    /// pending). `None` for a buffer that is not a list.
    #[inline]
    pub(crate) fn write_slices(&mut self, done: usize) -> Option<(*const IoSlice, usize)> {
        match &mut self.0 {
            Inner::List(list) => Some(list.slices_after(done)),
            _ => None,
        }
    }
}

impl List {
    /// The slices after the first `done` bytes, rebuilt in the list's array.
    #[cold]
    fn slices_after(&mut self, done: usize) -> (*const IoSlice, usize) {
        let list = self;
        list.slices.clear();
        let mut skip = done;
        for b in &list.bufs {
            let bytes = b.bytes();
            if skip >= bytes.len() {
                skip -= bytes.len();
                continue;
            }
            list.slices.push(static_slice(&bytes[skip..]));
            skip = 0;
        }
        (list.slices.as_ptr(), list.slices.len())
    }
}

impl AnyBuf {
    /// Records that a read put `n` bytes into the room
    /// [`read_window(0)`](AnyBuf::read_window) had; `n` is clamped to it.
    ///
    /// The count must be what the OS (or the worker thread) reported for a
    /// read into that memory: that is what makes those bytes initialised.
    #[inline]
    pub(crate) fn commit_read(&mut self, n: usize) {
        if let Inner::Vec(v) = &mut self.0 {
            let n = n.min(v.capacity() - v.len());
            // SAFETY: `n` is within the spare room (clamped) and the caller
            // passes what a read into it reported as written.
            unsafe { v.io_filled(n) };
            return;
        }
        self.commit_read_slow(n);
    }

    #[inline(never)]
    fn commit_read_slow(&mut self, n: usize) {
        let room = self.spare().1;
        let n = n.min(room);
        if n == 0 {
            return;
        }
        // `n` is within the spare room (clamped above) and the caller
        // passes what a read into it reported as written.
        match &mut self.0 {
            // SAFETY: as said above.
            Inner::Vec(v) => unsafe { v.io_filled(n) },
            // SAFETY: as said above.
            Inner::Boxed(v) => unsafe { v.io_filled(n) },
            #[cfg(feature = "bytes")]
            // SAFETY: as said above.
            Inner::BytesMut(v) => unsafe { v.io_filled(n) },
            // SAFETY: as said above.
            Inner::Other(v) => unsafe { v.filled(n) },
            _ => {}
        }
    }
}

impl std::ops::Deref for AnyBuf {
    type Target = [u8];

    /// The buffer's bytes: what a write would send, or what a read put into
    /// a `Vec`, `Box<[u8]>` or `BytesMut` (with the length the read set).
    /// A program's own read-only buffer type and a vectored write's list
    /// show nothing here: take them back with [`AnyBuf::downcast`] or
    /// [`Cancelled::buffers`](crate::Cancelled::buffers).
    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl Default for AnyBuf {
    fn default() -> AnyBuf {
        AnyBuf::empty()
    }
}

impl fmt::Debug for AnyBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.0 {
            Inner::Vec(_) => "Vec<u8>",
            Inner::Boxed(_) => "Box<[u8]>",
            Inner::Static(_) => "&'static [u8]",
            Inner::StaticStr(_) => "&'static str",
            #[cfg(feature = "bytes")]
            Inner::Bytes(_) => "Bytes",
            #[cfg(feature = "bytes")]
            Inner::BytesMut(_) => "BytesMut",
            Inner::List(_) => "list",
            Inner::Other(_) => "other",
        };
        f.debug_struct("AnyBuf").field("type", &kind).finish_non_exhaustive()
    }
}

/// One slice of a vectored write as the OS reads it: `iovec` on Unix,
/// `WSABUF` on Windows (the layout `std::io::IoSlice` guarantees).
pub(crate) type IoSlice = std::io::IoSlice<'static>;

/// The buffers of a vectored write and the slice array handed to the OS.
struct List {
    bufs: Vec<AnyBuf>,
    /// Points into `bufs`' heap memory, which does not move while the list
    /// lives (the `IoBuf` contract); rebuilt before each transfer.
    slices: Vec<IoSlice>,
}

/// A `'static` slice over buffer memory a [`List`] keeps alive.
fn static_slice(bytes: &[u8]) -> IoSlice {
    // SAFETY: `bytes` is the memory of a buffer in the same `List`, which by
    // the `IoBuf` contract stays put and unchanged while the list (and so
    // this slice, stored next to it) lives; the slice is only ever handed to
    // the OS, never read as `'static` by safe code.
    let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
    std::io::IoSlice::new(bytes)
}

/// A window into a buffer the driver owns, for a worker thread to read or
/// write (file I/O on Unix). The driver keeps the buffer alive until the
/// worker's result has come back — or forever, if the driver goes away first.
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) struct RawWindow {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the window is only a pointer and a length; the memory stays valid
// (see the type's documentation) and only the one worker uses it meanwhile.
unsafe impl Send for RawWindow {}

#[cfg_attr(not(unix), allow(dead_code))]
impl RawWindow {
    /// The window a read of `buf` fills after `done` bytes.
    pub(crate) fn for_read(buf: &mut AnyBuf, done: usize) -> RawWindow {
        let (ptr, len) = buf.read_window(done);
        RawWindow { ptr, len }
    }

    /// The window a write of `buf` sends after `done` bytes.
    pub(crate) fn for_write(buf: &AnyBuf, done: usize) -> RawWindow {
        let b = buf.write_window(done);
        RawWindow {
            ptr: b.as_ptr().cast_mut(),
            len: b.len(),
        }
    }

    /// The window's address and length.
    pub(crate) fn parts(&self) -> (*mut u8, usize) {
        (self.ptr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_buffers_come_back_as_themselves() {
        let b = AnyBuf::for_write(vec![1u8, 2, 3]);
        assert!(matches!(b.0, Inner::Vec(_)));
        assert_eq!(b.downcast::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
        let b = AnyBuf::for_write("hi");
        assert_eq!(b.write_window(1), b"i");
        let b = b.downcast::<Vec<u8>>().unwrap_err();
        assert_eq!(b.downcast::<&'static str>().unwrap(), "hi");
        let b = AnyBuf::for_write(String::from("s"));
        assert_eq!(&*b, b"s");
        assert_eq!(b.downcast::<String>().unwrap(), "s");
    }

    #[test]
    fn a_read_fills_the_spare_capacity_and_sets_the_length() {
        let mut v = Vec::with_capacity(8);
        v.push(7u8);
        let mut b = AnyBuf::for_read(v);
        let (ptr, len) = b.read_window(0);
        assert_eq!(len, 7);
        // SAFETY: the window has 7 writable bytes.
        unsafe { ptr.write_bytes(9, 3) };
        b.commit_read(3);
        assert_eq!(b.downcast::<Vec<u8>>().unwrap(), vec![7, 9, 9, 9]);
    }

    /// A buffer type of the program's own, boxed by the driver.
    struct Mine(Vec<u8>);
    // SAFETY: delegates to the vector.
    unsafe impl IoBufMut for Mine {
        fn io_spare(&mut self) -> (*mut u8, usize) {
            self.0.io_spare()
        }
        unsafe fn io_filled(&mut self, n: usize) {
            // SAFETY: the caller's promise.
            unsafe { self.0.io_filled(n) }
        }
    }

    #[test]
    fn other_buffers_are_boxed_and_come_back() {
        let mut b = AnyBuf::for_read(Mine(Vec::with_capacity(4)));
        assert!(matches!(b.0, Inner::Other(..)));
        let (ptr, len) = b.read_window(1);
        assert_eq!(len, 3);
        // SAFETY: the window has 3 writable bytes.
        unsafe { ptr.write_bytes(5, 3) };
        b.commit_read(10);
        let m = b.downcast::<Mine>().unwrap();
        // The count was clamped to the room, and `done` is the caller's to add.
        assert_eq!(m.0.len(), 4);
    }

    #[test]
    fn a_list_skips_what_was_written() {
        let mut b = AnyBuf::for_write_list(vec![vec![1u8, 2], vec![], vec![3, 4, 5]]);
        assert_eq!(b.capacity_for(false), 5);
        let (_, n) = b.write_slices(0).unwrap();
        assert_eq!(n, 2);
        let (ptr, n) = b.write_slices(3).unwrap();
        assert_eq!(n, 1);
        // SAFETY: one slice, built above and alive with `b`.
        let first = unsafe { &*ptr };
        assert_eq!(&**first, &[4, 5]);
        let bufs = b.downcast_list::<Vec<u8>>().unwrap();
        assert_eq!(bufs.len(), 3);
    }
}
