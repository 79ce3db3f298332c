//! Typed handles: the [`Handle`] trait every handle type implements and the
//! macro that defines one. The tables behind them are in `slab.rs`, their
//! kinds in `kinds.rs`.

use std::fmt;

pub(crate) use crate::slab::Key;
#[cfg(eventcore_backend)]
pub(crate) use crate::slab::{Handles, Table};

/// Implemented by every typed handle ([`TimerId`](crate::TimerId),
/// [`StreamSocket`](crate::StreamSocket) …) so reference counting and user data
/// work the same way for all of them.
pub trait Handle: Copy + fmt::Debug + sealed::Sealed {
    #[doc(hidden)]
    fn kind(self) -> HandleKind;
    #[doc(hidden)]
    fn key(self) -> Key;
}

pub use crate::kinds::HandleKind;

pub(crate) mod sealed {
    pub trait Sealed {}
}

macro_rules! define_handle {
    ($(#[$meta:meta])* $name:ident, $kind:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub(crate) $crate::handle::Key);

        impl $crate::handle::sealed::Sealed for $name {}

        impl $crate::handle::Handle for $name {
            fn kind(self) -> $crate::handle::HandleKind {
                $crate::handle::HandleKind::$kind
            }
            fn key(self) -> $crate::handle::Key {
                self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }
    };
}
#[allow(unused_imports)] // Unused on targets without a backend yet.
pub(crate) use define_handle;
