//! Pipes: [`ByteStream`]s over OS pipes.

use std::os::fd::OwnedFd;

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
    /// `OwnedFd` …).
    pub fn adopt(fd: impl Into<OwnedFd>) -> Result<Pipe> {
        let core = current();
        let h = core.with_driver(|drv| drv.pipes().adopt(fd))?;
        Ok(ByteStream::from_raw(core, h))
    }
}
