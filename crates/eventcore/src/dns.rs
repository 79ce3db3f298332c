//! DNS: name lookups that never block the loop thread.
//!
//! A lookup completes with every IPv4 and IPv6 address of the name, or the
//! resolver's error (its code in [`Error::resolver_code`]). It never blocks
//! the loop thread: on Unix `getaddrinfo` runs on the worker pool; on Windows
//! `GetAddrInfoExW` runs asynchronously with a completion routine and is
//! cancelled with `GetAddrInfoExCancel`. Cancelling guarantees the callback
//! never runs; a result that still arrives is discarded.

use std::net::IpAddr;

use crate::driver::{Op, Outcome};
use crate::handle::Key;
use crate::sys::{self, LookupStart};
use crate::{Driver, Error, Result};

/// Identifies a pending lookup, for [`Dns::cancel_lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LookupId(Key);

type LookupCallback = Box<dyn FnOnce(&mut Driver, LookupId, Result<Vec<IpAddr>>)>;

pub(crate) struct DnsOp {
    callback: LookupCallback,
}

/// The DNS view of a driver (see [`Driver::dns`]).
pub struct Dns<'a> {
    drv: &'a mut Driver,
}

impl Driver {
    /// DNS lookups.
    pub fn dns(&mut self) -> Dns<'_> {
        Dns { drv: self }
    }

    pub(crate) fn complete_dns(&mut self, key: Key, outcome: Outcome) -> bool {
        let Some(Op::Dns(op)) = self.ops.remove(key) else {
            return false;
        };
        let result = match outcome {
            Outcome::Job(out) => match out.downcast::<Result<Vec<IpAddr>>>() {
                Ok(r) => *r,
                Err(_) => Err(Error::new(crate::Status::Other)),
            },
            Outcome::Failed(e) => Err(e),
            // A lookup the backend performed (Windows).
            Outcome::Sys(c) => crate::sys::lookup_result(c),
            _ => Err(Error::new(crate::Status::Other)),
        };
        (op.callback)(self, LookupId(key), result.map_err(|e| e.in_operation(crate::error::Operation::Lookup)));
        true
    }
}

impl Dns<'_> {
    /// Resolves `name` (a host name or an address literal) on the worker pool.
    /// The callback gets all its addresses, or the resolver's error: for
    /// example [`Status::NotFound`](crate::Status::NotFound) for a name that
    /// does not exist. A name with a NUL byte is `InvalidArgument`.
    pub fn lookup(
        &mut self,
        name: &str,
        callback: impl FnOnce(&mut Driver, LookupId, Result<Vec<IpAddr>>) + 'static,
    ) -> LookupId {
        let key = self.drv.ops.insert(Op::Dns(DnsOp {
            callback: Box::new(callback),
        }));
        match sys::dns::start(&mut self.drv.sys, key.to_u64(), name) {
            // A blocking resolver (getaddrinfo): it runs on the worker pool.
            LookupStart::Pool(resolve) => {
                let name = name.to_owned();
                self.drv.submit_job(key, move || Box::new(resolve(&name)));
            }
            // Asynchronous in the backend (GetAddrInfoExW).
            LookupStart::Backend(Some(c)) => self.drv.push_ready(key, Outcome::Sys(c)),
            LookupStart::Backend(None) => {}
        }
        LookupId(key)
    }

    /// Withdraws a lookup: its callback will not run. Returns whether it was
    /// still pending.
    pub fn cancel_lookup(&mut self, id: LookupId) -> bool {
        match self.drv.ops.get(id.0) {
            Some(Op::Dns(_)) => {
                sys::dns::cancel(&mut self.drv.sys, id.0.to_u64());
                self.drv.ops.remove(id.0).is_some()
            }
            _ => false,
        }
    }
}
