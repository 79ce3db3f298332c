//! Callbacks stored without an allocation when they are small.
//!
//! Every pending operation holds one `FnOnce` callback. A `Box<dyn FnOnce>`
//! costs a `malloc` and a `free` per operation and a heap block per idle
//! connection or armed timer; most callbacks capture a pointer or two (an
//! `Rc` to the connection's state, a handle) and an I/O callback often a
//! buffer as well. The types here keep a closure of up to two words (timers,
//! events) or four words (I/O: an `Rc` and a `Vec`), pointer-aligned, inside
//! the operation record itself and box only larger ones — the small-closure
//! optimisation libuv gets for free by making the caller own the request
//! struct.
//!
//! This is not an OS backend; it sits in `sys/` because all of the crate's
//! unsafe code lives here (ARCHITECTURE.md, rule 8). The unsafe surface is the
//! three shims per signature below, each reading or dropping the one closure
//! type they were instantiated for.

use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};

use crate::handle::Key;
use crate::sockets::SocketAddress;
use crate::{Driver, EventId, Result, TimerId};

/// The inline storage of `N` words.
type Storage<const N: usize> = MaybeUninit<[usize; N]>;

/// What a stored closure can be asked to do: be called (consuming it) or be
/// dropped uncalled. `C` is the signature's shim type.
struct VTable<C, S> {
    call: C,
    drop: unsafe fn(*mut S),
    /// Whether the closure itself is in the storage (else a box is).
    #[cfg_attr(not(test), allow(dead_code))]
    inline: bool,
}

/// Whether `F` fits the inline storage `S`.
const fn fits<F, S>() -> bool {
    mem::size_of::<F>() <= mem::size_of::<S>() && mem::align_of::<F>() <= mem::align_of::<S>()
}

/// Drops the closure stored inline.
///
/// # Safety
/// `data` holds a live `F` written by `store`, which is not used afterwards.
unsafe fn drop_inline<F, S>(data: *mut S) {
    // SAFETY: the caller guarantees `data` holds a live `F` (it fits `S`).
    unsafe { data.cast::<F>().drop_in_place() }
}

/// Drops the boxed closure whose pointer is stored inline.
///
/// # Safety
/// `data` holds a `Box<F>` written by `store`, which is not used afterwards.
unsafe fn drop_boxed<F, S>(data: *mut S) {
    // SAFETY: the caller guarantees `data` holds a live `Box<F>`.
    unsafe { data.cast::<Box<F>>().drop_in_place() }
}

/// Moves `f` into new storage (inline if it fits, else boxed).
fn store<F, const N: usize>(f: F) -> Storage<N> {
    let mut data = Storage::<N>::uninit();
    if fits::<F, Storage<N>>() {
        // SAFETY: `F` fits the storage in size and alignment (checked above);
        // the storage is uninitialised, so nothing is overwritten.
        unsafe { data.as_mut_ptr().cast::<F>().write(f) };
    } else {
        // SAFETY: a `Box` is one pointer, which the storage holds.
        unsafe { data.as_mut_ptr().cast::<Box<F>>().write(Box::new(f)) };
    }
    data
}

/// Defines an inline-or-boxed `FnOnce` type for one callback signature,
/// with `$words` words of inline storage.
macro_rules! inline_fn {
    ($(#[$meta:meta])* $name:ident [$words:literal] ($($arg:ident: $ty:ty),*)) => {
        $(#[$meta])*
        pub(crate) struct $name {
            data: Storage<$words>,
            vtable: &'static VTable<unsafe fn(*mut Storage<$words>, $($ty),*), Storage<$words>>,
            /// The closure may be `!Send`.
            _not_send: PhantomData<*const ()>,
        }

        impl $name {
            /// Stores `f`: inline when it fits, else in a box.
            pub(crate) fn new<F: FnOnce($($ty),*) + 'static>(f: F) -> $name {
                /// Calls the closure stored inline.
                ///
                /// # Safety
                /// `data` holds a live `F` that is not used afterwards.
                unsafe fn call_inline<F: FnOnce($($ty),*)>(data: *mut Storage<$words>, $($arg: $ty),*) {
                    // SAFETY: the caller guarantees `data` holds a live `F`;
                    // it is moved out once and never touched again.
                    let f = unsafe { data.cast::<F>().read() };
                    f($($arg),*)
                }
                /// Calls the boxed closure whose pointer is stored inline.
                ///
                /// # Safety
                /// `data` holds a live `Box<F>` that is not used afterwards.
                unsafe fn call_boxed<F: FnOnce($($ty),*)>(data: *mut Storage<$words>, $($arg: $ty),*) {
                    // SAFETY: as above, for the box.
                    let f = unsafe { data.cast::<Box<F>>().read() };
                    f($($arg),*)
                }
                let vtable = if fits::<F, Storage<$words>>() {
                    const {
                        &VTable {
                            call: call_inline::<F> as unsafe fn(*mut Storage<$words>, $($ty),*),
                            drop: drop_inline::<F, Storage<$words>>,
                            inline: true,
                        }
                    }
                } else {
                    const {
                        &VTable {
                            call: call_boxed::<F> as unsafe fn(*mut Storage<$words>, $($ty),*),
                            drop: drop_boxed::<F, Storage<$words>>,
                            inline: false,
                        }
                    }
                };
                $name { data: store(f), vtable, _not_send: PhantomData }
            }

            /// Calls the callback, consuming it.
            pub(crate) fn call(self, $($arg: $ty),*) {
                let mut this = ManuallyDrop::new(self);
                // SAFETY: `data` holds the closure `vtable` was made for (see
                // `new`); `this` is never dropped, so it is consumed once.
                unsafe { (this.vtable.call)(&mut this.data, $($arg),*) }
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: `data` holds the closure `vtable` was made for, and
                // a dropped value is never called.
                unsafe { (self.vtable.drop)(&mut self.data) }
            }
        }
    };
}

inline_fn!(
    /// A timer wait's callback (`Timers::wait`).
    TimerFn[2](drv: &mut Driver, timer: TimerId, fired: bool)
);

inline_fn!(
    /// An event wait's callback (`Events::wait`).
    EventFn[2](drv: &mut Driver, event: EventId)
);

inline_fn!(
    /// A read's or write's callback; the key is the handle it ran on.
    IoDoneFn[4](drv: &mut Driver, handle: Key, result: Result<usize>, buf: Vec<u8>)
);

inline_fn!(
    /// A datagram receive's callback; the key is the socket.
    RecvFn[4](drv: &mut Driver, handle: Key, result: Result<(usize, SocketAddress)>, buf: Vec<u8>)
);

inline_fn!(
    /// A connect's callback; the key is the socket.
    ConnectFn[4](drv: &mut Driver, handle: Key, result: Result<()>)
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn driver() -> Driver {
        Driver::new().expect("driver")
    }

    #[test]
    fn small_closures_are_inline_and_large_ones_boxed_both_run_once() {
        let mut drv = driver();
        let t = drv.timers().create();
        let count = Rc::new(Cell::new(0));
        let c = count.clone();
        let small = TimerFn::new(move |_, _, fired| c.set(c.get() + usize::from(fired)));
        assert!(small.vtable.inline, "an Rc fits inline");
        small.call(&mut drv, t, true);
        let big = [7u64; 8];
        let c = count.clone();
        let large = TimerFn::new(move |_, _, _| c.set(c.get() + big.iter().sum::<u64>() as usize));
        assert!(!large.vtable.inline, "72 bytes are boxed");
        large.call(&mut drv, t, false);
        assert_eq!(count.get(), 1 + 56);
        let _ = drv.release_ref(t);
    }

    #[test]
    fn uncalled_callbacks_drop_their_captures() {
        let token = Rc::new(());
        let small = {
            let t = token.clone();
            EventFn::new(move |_, _| drop(t))
        };
        let large = {
            let t = token.clone();
            let pad = [0u8; 64];
            EventFn::new(move |_, _| drop((t, pad)))
        };
        assert_eq!(Rc::strong_count(&token), 3);
        drop(small);
        drop(large);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn a_callback_is_its_storage_and_a_pointer() {
        assert_eq!(mem::size_of::<TimerFn>(), 3 * mem::size_of::<usize>());
        assert_eq!(mem::size_of::<Option<TimerFn>>(), 3 * mem::size_of::<usize>());
        assert_eq!(mem::size_of::<IoDoneFn>(), 5 * mem::size_of::<usize>());
    }

    #[test]
    fn an_io_callback_holds_an_rc_and_a_buffer_inline() {
        let state = Rc::new(Cell::new(0usize));
        let buf: Vec<u8> = Vec::from([1u8, 2, 3]);
        let s = state.clone();
        let f = IoDoneFn::new(move |_, _, _, _| s.set(buf.len()));
        assert!(f.vtable.inline);
        drop(f);
        assert_eq!(Rc::strong_count(&state), 1);
    }
}
