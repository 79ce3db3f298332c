//! `Stream`, `FusedStream` and `FusedFuture` (from `futures-core`) for the
//! values that deliver a sequence or complete once, so that `StreamExt`,
//! `select!` and the rest of the futures ecosystem take them as they are.
//!
//! - [`Listener`]: the accepted connections. A failure that ends accepting
//!   (see [`Listener::accept`]) is yielded once, then the stream ends;
//!   transient failures are yielded and accepting goes on.
//! - [`Interval`]: the tick counts of [`Interval::tick`]; never ends.
//! - [`Signal`]: the arrivals of the signal; never ends.
//! - [`DirectoryWatcher`]: the changes (and failures); never ends while the
//!   watcher lives.
//! - [`Datagrams`](super::Datagrams) (from
//!   [`DatagramSocket::datagrams`](super::DatagramSocket::datagrams)): the
//!   received datagrams with their senders; never ends.
//! - [`Sleep`] and [`JoinHandle`] are fused futures: terminated once they
//!   have completed.
//!
//! Every stream here is cancel-safe: an item is taken only by the poll that
//! returns it.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::{FusedFuture, FusedStream, Stream};

use super::{ByteStream, DirectoryWatcher, Interval, JoinHandle, Listener, Signal, Sleep};
use crate::{FileChange, Result, SocketAddress, StreamSocket};

impl Stream for Listener {
    type Item = Result<(ByteStream<StreamSocket>, SocketAddress)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.poll_accepted(cx) {
            Poll::Ready(item) => Poll::Ready(Some(item)),
            Poll::Pending if self.accept_ended() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl FusedStream for Listener {
    fn is_terminated(&self) -> bool {
        self.accept_ended()
    }
}

impl Stream for Interval {
    type Item = u64;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        self.get_mut().poll_tick(cx).map(Some)
    }
}

impl FusedStream for Interval {
    fn is_terminated(&self) -> bool {
        false
    }
}

impl Stream for Signal {
    type Item = i32;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<i32>> {
        self.poll_recv(cx).map(Some)
    }
}

impl FusedStream for Signal {
    fn is_terminated(&self) -> bool {
        false
    }
}

impl Stream for DirectoryWatcher {
    type Item = Result<FileChange>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_change(cx).map(Some)
    }
}

impl FusedStream for DirectoryWatcher {
    fn is_terminated(&self) -> bool {
        false
    }
}

impl FusedFuture for Sleep {
    fn is_terminated(&self) -> bool {
        self.is_elapsed()
    }
}

impl<T> FusedFuture for JoinHandle<T> {
    fn is_terminated(&self) -> bool {
        self.output_taken()
    }
}
