//! A pair whose second half is pinned whenever the pair is: the record of
//! one `rt` task, which holds its join state and its future in one heap
//! block (`Rc::pin`), the future polled in place.
//!
//! This is not an OS backend; it sits in `sys/` because all of the crate's
//! unsafe code lives there. The unsafe surface is one pin projection, sound
//! for the reasons the standard library lists for structural pinning
//! (`std::pin`, "Pinning is structural for field"):
//!
//! 1. `PinCell<H, T>` is `Unpin` only if `T` is (auto traits: only if `H`
//!    and `RefCell<T>`, so `T`, are).
//! 2. It has no `Drop` of its own, so nothing moves `T` out while dropping.
//! 3. `T` is dropped where it lies: by the `RefCell`'s own drop, or through
//!    the pinned reference (`Pin::set`), never moved out first.
//! 4. Nothing else reaches the `T` by value or by `&mut` without a `Pin`:
//!    the only way in is [`PinCell::try_borrow_mut`], which takes the pair
//!    pinned and hands the borrow out pinned. `head` gives only `&H` (the
//!    head is not pinned).
//! 5. It is not `#[repr(packed)]`.

use std::cell::{RefCell, RefMut};
use std::pin::Pin;

/// A head `H`, never pinned, and a body `T` in a `RefCell`, structurally
/// pinned: once the pair is pinned, the body is only lent out pinned.
pub(crate) struct PinCell<H, T> {
    head: H,
    body: RefCell<T>,
}

impl<H, T> PinCell<H, T> {
    pub(crate) fn new(head: H, body: T) -> PinCell<H, T> {
        PinCell {
            head,
            body: RefCell::new(body),
        }
    }

    /// The head (not pinned).
    pub(crate) fn head(&self) -> &H {
        &self.head
    }

    /// The body, pinned and borrowed mutably; `None` if it is borrowed
    /// already (a re-entrant call).
    pub(crate) fn try_borrow_mut(self: Pin<&Self>) -> Option<Pin<RefMut<'_, T>>> {
        let borrow = self.get_ref().body.try_borrow_mut().ok()?;
        // SAFETY: `self` is pinned, so the `PinCell` — and the `T` inside its
        // `RefCell`, stored inline — stays where it is until it is dropped.
        // The body is structurally pinned (the module docs list why): no
        // path hands out the `T` unpinned, by `&mut` or by value, so the
        // `T` is never moved until it is dropped in place. `RefMut`'s
        // `Deref`/`DerefMut` return the same place every time and never
        // move the `T`.
        Some(unsafe { Pin::new_unchecked(borrow) })
    }
}
