//! Pipes: [`ByteStream`]s over OS pipes.

use super::executor::current;
use super::io::ByteStream;
use crate::{PipeHandle, Result};

/// One end of an OS pipe, with owned-buffer reads and writes and the
/// `futures-io` traits (see [`ByteStream`]). `AsyncWrite::close` closes the
/// pipe, so the reader sees end of stream.
pub type Pipe = ByteStream<PipeHandle>;

impl ByteStream<PipeHandle> {
    /// A new OS pipe: (read end, write end).
    pub fn create() -> Result<(Pipe, Pipe)> {
        let core = current();
        let (r, w) = core.with_driver(|drv| drv.pipes().create())?;
        Ok((ByteStream::from_raw(core.clone(), r), ByteStream::from_raw(core, w)))
    }

    /// Takes over one end of an OS pipe (a `std::process::ChildStdout`, an
    /// `OwnedFd` on Unix or an overlapped `OwnedHandle` on Windows …; see
    /// [`Pipes::adopt`](crate::Pipes::adopt)).
    pub fn adopt(fd: impl Into<crate::sys::OwnedPipe>) -> Result<Pipe> {
        let core = current();
        let h = core.with_driver(|drv| drv.pipes().adopt(fd))?;
        Ok(ByteStream::from_raw(core, h))
    }
}
