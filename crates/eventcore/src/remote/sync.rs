//! The synchronisation types of the remote queue: the standard library's, or
//! loom's in the unit tests of a build with `--cfg loom`, for the model in
//! `loom_tests` — so that the model checks this very code and not a copy.
//! (loom is a dev-dependency: a plain build with `--cfg loom` keeps std's.)

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(all(loom, test))]
pub(crate) use loom::sync::{Mutex, MutexGuard};
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::{Mutex, MutexGuard};
