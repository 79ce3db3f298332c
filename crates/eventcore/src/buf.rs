//! Owned buffers: what the read, write, send, receive, file and pipe calls
//! take and give back.
//!
//! An operation owns its buffer from the call until its callback (or the
//! future's result) hands it back — also on failure, and through
//! [`Cancelled::buffer`](crate::Cancelled::buffer) on cancel — because the
//! OS may read or fill the memory in between (io_uring and overlapped I/O
//! do so after the call has returned). Any type that keeps its bytes in
//! memory that does not move with the value can be a buffer:
//!
//! | type | write ([`IoBuf`]) | read ([`IoBufMut`]) |
//! |---|---|---|
//! | `Vec<u8>` | its bytes | after its length, up to its capacity |
//! | `Box<[u8]>` | its bytes | all of it, from the start |
//! | `String`, `&'static str`, `&'static [u8]` | its bytes | — |
//! | `bytes::Bytes` (feature `bytes`) | its bytes | — |
//! | `bytes::BytesMut` (feature `bytes`) | its bytes | after its length, up to its capacity |
//!
//! A read into a `Vec` or `BytesMut` appends: `Vec::with_capacity(n)` reads
//! up to `n` bytes and comes back with its length set to what arrived;
//! nothing is zeroed first. A buffer that has capacity but no spare room
//! left is refused ([`Status::InvalidArgument`](crate::Status::InvalidArgument)),
//! so a loop that forgets to `clear()` a reused buffer fails loudly instead
//! of reading nothing; a buffer with no capacity at all (`Vec::new()`) waits
//! for data without consuming any, where the call documents that.
//!
//! Arrays by value are not buffers (their bytes move with the value), and a
//! borrowed slice cannot be one (the driver may hold it after the caller's
//! borrow ends): both are refused by the type system. A program's own buffer
//! type implements the traits with `unsafe impl`, promising what their
//! safety sections say; the driver keeps such a buffer in one box.

pub use crate::sys::buf::{AnyBuf, IoBuf, IoBufMut};
