//! Linux mechanisms: epoll and the eventfd waker.

pub(crate) mod epoll;
pub(crate) mod inotify;
pub(crate) mod process;
pub(crate) mod signals;
pub(crate) mod waker;
