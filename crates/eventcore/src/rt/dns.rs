//! Name lookups as futures.

use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;

use super::executor::Core;
use super::op::{Completer, OpFuture, Operation};
use crate::{Driver, LookupId, Result};

struct Lookup {
    name: String,
}

impl Operation for Lookup {
    type Output = Result<Vec<IpAddr>>;
    type Token = LookupId;
    type Ret = Result<Vec<IpAddr>>;

    fn start(&mut self, drv: &mut Driver, done: Completer<Self::Output>) -> Result<LookupId, Self::Ret> {
        Ok(drv.dns().lookup(&self.name, move |_, _, r| {
            let _ = done.complete(r);
        }))
    }

    fn cancel(drv: &mut Driver, id: LookupId) {
        drv.dns().cancel_lookup(id);
    }

    fn ready(&mut self, _: &Rc<Core>, _: LookupId, out: Self::Output) -> Self::Ret {
        out
    }
}

/// Resolves `name` (a host name or an address literal) to all its IPv4 and
/// IPv6 addresses, on the driver's worker pool; or the resolver's error
/// (its own code in [`Error::resolver_code`](crate::Error::resolver_code)).
///
/// **Cancel safety:** cancel-safe: dropping the future withdraws the lookup
/// (the resolver may still finish on its worker; its answer is dropped).
pub fn lookup(name: &str) -> impl Future<Output = Result<Vec<IpAddr>>> {
    OpFuture::new(Lookup { name: name.to_owned() })
}
