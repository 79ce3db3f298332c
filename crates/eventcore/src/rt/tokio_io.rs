//! tokio's I/O traits for the byte streams (feature `tokio-io`): tokio's
//! [`AsyncRead`], [`AsyncBufRead`] and [`AsyncWrite`] for
//! [`ByteStream`] (TCP and Unix connections, pipes, child stdio), its
//! borrowed halves ([`ReadHalf`], [`WriteHalf`]) and its owned halves
//! ([`OwnedReadHalf`], [`OwnedWriteHalf`]), next to the `futures-io` traits
//! they already have. The module has no items of its own: the
//! implementations are on the types. tokio-util's codecs (`Framed`, `FramedRead`,
//! `FramedWrite`), tokio-rustls and the rest of tokio's I/O ecosystem take
//! them as they are; no tokio runtime is involved (the tokio dependency has
//! no features: the traits and `ReadBuf` only).
//!
//! Both families of traits share one implementation and one pair of
//! internal buffers, so they can be used in turn on one stream. Their
//! extension traits share method names (`read`, `write_all` …), and the
//! stream's own owned-buffer methods come first anyway: call the extension
//! traits' versions through generic code or with the trait named.
//!
//! - **Reads** copy once, from the stream's internal buffer into the
//!   caller's [`ReadBuf`](tokio::io::ReadBuf) (`put_slice`: no unsafe, and
//!   the buffer's uninitialised part is never touched); end of stream fills
//!   nothing.
//! - **Writes** buffer as the `futures-io` side does (see [`ByteStream`]);
//!   `poll_shutdown` is `poll_close`: it flushes, then shuts a socket down
//!   for writing, or closes a pipe.
//!
//! ```
//! use eventcore::rt::{self, Executor, TcpListener, TcpStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let mut ex = Executor::new(eventcore::Driver::new()?);
//! ex.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!     let server = rt::spawn(async move {
//!         let (mut conn, _) = listener.accept().await?;
//!         let mut buf = [0; 5];
//!         AsyncReadExt::read_exact(&mut conn, &mut buf).await?;
//!         AsyncWriteExt::write_all(&mut conn, &buf).await?;
//!         AsyncWriteExt::shutdown(&mut conn).await
//!     });
//!     let mut client = TcpStream::connect(addr).await?;
//!     AsyncWriteExt::write_all(&mut client, b"hello").await?;
//!     AsyncWriteExt::flush(&mut client).await?;
//!     let mut echo = Vec::new();
//!     AsyncReadExt::read_to_end(&mut client, &mut echo).await?;
//!     assert_eq!(echo, b"hello");
//!     server.await??;
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })
//! .unwrap();
//! # Ok::<(), eventcore::Error>(())
//! ```
//!
//! [`AsyncRead`]: tokio::io::AsyncRead
//! [`AsyncBufRead`]: tokio::io::AsyncBufRead
//! [`AsyncWrite`]: tokio::io::AsyncWrite
//! [`ByteStream`]: super::ByteStream
//! [`ReadHalf`]: super::ReadHalf
//! [`WriteHalf`]: super::WriteHalf
//! [`OwnedReadHalf`]: super::OwnedReadHalf
//! [`OwnedWriteHalf`]: super::OwnedWriteHalf

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{ByteStream, OwnedReadHalf, OwnedWriteHalf, ReadHalf, StreamHandle, WriteHalf};

/// tokio's `poll_read` over a `futures-io` buffered reader: one copy, from
/// its buffer into `buf`.
fn read_into<T: futures_io::AsyncBufRead + Unpin>(
    io: &mut T,
    cx: &mut Context<'_>,
    buf: &mut tokio::io::ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if buf.remaining() == 0 {
        return Poll::Ready(Ok(()));
    }
    let data = std::task::ready!(futures_io::AsyncBufRead::poll_fill_buf(Pin::new(&mut *io), cx))?;
    let n = data.len().min(buf.remaining());
    buf.put_slice(&data[..n]);
    futures_io::AsyncBufRead::consume(Pin::new(io), n);
    Poll::Ready(Ok(()))
}

/// tokio's reading traits for types that have the `futures-io` ones.
macro_rules! tokio_read {
    ($([$($g:tt)*] $ty:ty),* $(,)?) => {
        $(
            impl<$($g)*> tokio::io::AsyncRead for $ty {
                fn poll_read(
                    self: Pin<&mut Self>,
                    cx: &mut Context<'_>,
                    buf: &mut tokio::io::ReadBuf<'_>,
                ) -> Poll<io::Result<()>> {
                    read_into(self.get_mut(), cx, buf)
                }
            }

            impl<$($g)*> tokio::io::AsyncBufRead for $ty {
                fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
                    futures_io::AsyncBufRead::poll_fill_buf(self, cx)
                }

                fn consume(self: Pin<&mut Self>, amt: usize) {
                    futures_io::AsyncBufRead::consume(self, amt)
                }
            }
        )*
    };
}

/// tokio's writing trait for types that have the `futures-io` one.
macro_rules! tokio_write {
    ($([$($g:tt)*] $ty:ty),* $(,)?) => {
        $(
            impl<$($g)*> tokio::io::AsyncWrite for $ty {
                fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                    futures_io::AsyncWrite::poll_write(self, cx, buf)
                }

                fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    futures_io::AsyncWrite::poll_flush(self, cx)
                }

                fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    futures_io::AsyncWrite::poll_close(self, cx)
                }
            }
        )*
    };
}

tokio_read! {
    [H: StreamHandle] ByteStream<H>,
    ['a, H: StreamHandle] ReadHalf<'a, H>,
    [H: StreamHandle] OwnedReadHalf<H>,
}

tokio_write! {
    [H: StreamHandle] ByteStream<H>,
    ['a, H: StreamHandle] WriteHalf<'a, H>,
    [H: StreamHandle] OwnedWriteHalf<H>,
}
