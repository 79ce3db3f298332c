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
//! unsafe code lives there. Like the backends it knows nothing of the
//! contract: each type is generic over the driver and handle types its
//! callback gets, and the contract layer names the instances it uses
//! (`timers::TimerFn`, `events::EventFn`, `io::{IoDoneFn, RecvFn,
//! ConnectFn}`). The unsafe surface is the three shims per signature below,
//! each reading or dropping the one closure type they were instantiated for.

use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};

use crate::Result;

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
    ($(#[$meta:meta])* $name:ident<$($g:ident),*> [$words:literal] ($($arg:ident: $ty:ty),*)) => {
        $(#[$meta])*
        pub(crate) struct $name<$($g: 'static),*> {
            data: Storage<$words>,
            vtable: &'static VTable<unsafe fn(*mut Storage<$words>, $($ty),*), Storage<$words>>,
            /// The closure may be `!Send`.
            _not_send: PhantomData<*const ()>,
        }

        impl<$($g: 'static),*> $name<$($g),*> {
            /// Stores `f`: inline when it fits, else in a box.
            pub(crate) fn new<F: FnOnce($($ty),*) + 'static>(f: F) -> Self {
                /// Calls the closure stored inline.
                ///
                /// # Safety
                /// `data` holds a live `F` that is not used afterwards.
                unsafe fn call_inline<$($g: 'static,)* F: FnOnce($($ty),*)>(data: *mut Storage<$words>, $($arg: $ty),*) {
                    // SAFETY: the caller guarantees `data` holds a live `F`;
                    // it is moved out once and never touched again.
                    let f = unsafe { data.cast::<F>().read() };
                    f($($arg),*)
                }
                /// Calls the boxed closure whose pointer is stored inline.
                ///
                /// # Safety
                /// `data` holds a live `Box<F>` that is not used afterwards.
                unsafe fn call_boxed<$($g: 'static,)* F: FnOnce($($ty),*)>(data: *mut Storage<$words>, $($arg: $ty),*) {
                    // SAFETY: as above, for the box.
                    let f = unsafe { data.cast::<Box<F>>().read() };
                    f($($arg),*)
                }
                let vtable = if fits::<F, Storage<$words>>() {
                    const {
                        &VTable {
                            call: call_inline::<$($g,)* F> as unsafe fn(*mut Storage<$words>, $($ty),*),
                            drop: drop_inline::<F, Storage<$words>>,
                            inline: true,
                        }
                    }
                } else {
                    const {
                        &VTable {
                            call: call_boxed::<$($g,)* F> as unsafe fn(*mut Storage<$words>, $($ty),*),
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

        impl<$($g: 'static),*> Drop for $name<$($g),*> {
            fn drop(&mut self) {
                // SAFETY: `data` holds the closure `vtable` was made for, and
                // a dropped value is never called.
                unsafe { (self.vtable.drop)(&mut self.data) }
            }
        }
    };
}

inline_fn!(
    /// A callback of a driver `D` with a handle `H` and a flag: a timer
    /// wait's (fired or stopped), two words inline.
    FlagFn<D, H>[2](drv: &mut D, handle: H, flag: bool)
);

inline_fn!(
    /// A callback of a driver `D` with a handle `H`: an event wait's, two
    /// words inline.
    HandleFn<D, H>[2](drv: &mut D, handle: H)
);

inline_fn!(
    /// A callback of a driver `D` with a handle `H`, an outcome `R` and the
    /// operation's buffer: a read's, write's or receive's, four words inline
    /// (room for an `Rc` and the program's callback).
    BufFn<D, H, R>[4](drv: &mut D, handle: H, result: R, buf: crate::sys::buf::AnyBuf)
);

inline_fn!(
    /// A callback of a driver `D` with a handle `H` and a plain result: a
    /// connect's, four words inline.
    DoneFn<D, H>[4](drv: &mut D, handle: H, result: Result<()>)
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A stand-in for the driver: the types here know nothing of it.
    struct Drv;

    type TimerFn = FlagFn<Drv, u32>;
    type EventFn = HandleFn<Drv, u32>;
    type IoDoneFn = BufFn<Drv, u64, Result<usize>>;

    #[test]
    fn small_closures_are_inline_and_large_ones_boxed_both_run_once() {
        let mut drv = Drv;
        let t = 7;
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
