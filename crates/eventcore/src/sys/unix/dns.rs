//! Blocking name resolution with `getaddrinfo`, run on the worker pool.

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::Error;
use crate::sys::{LookupStart, Native};
use crate::Status;

/// Lookups run on the worker pool: `getaddrinfo` blocks.
pub(crate) fn start(_backend: &mut Native, _token: u64, _name: &str) -> LookupStart {
    LookupStart::Pool(lookup)
}

/// Nothing to withdraw: the pool job's result is dropped when it arrives.
pub(crate) fn cancel(_backend: &mut Native, _token: u64) {}

/// The error of a failed lookup completion (only pool jobs resolve names
/// here, so the backend never reports one).
pub(crate) fn resolver_error(e: std::io::Error) -> Error {
    Error::from(e)
}

/// Every IPv4 and IPv6 address of `name`, in the resolver's order, without
/// duplicates. A resolver failure keeps its `EAI_*` code.
pub(crate) fn lookup(name: &str) -> Result<Vec<IpAddr>, Error> {
    let c_name = CString::new(name).map_err(|_| Error::new(Status::InvalidArgument))?;
    // SAFETY: an all-zero addrinfo is a valid "no hints" value; we then set
    // the fields we want.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: the name is NUL-terminated, hints is initialised, and `res`
    // receives a list we free below.
    let rc = unsafe { libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        if rc == libc::EAI_SYSTEM {
            return Err(Error::from(std::io::Error::last_os_error()));
        }
        return Err(Error::resolver(resolver_status(rc), rc, gai_message(rc)));
    }
    let mut out = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list getaddrinfo returned; each node is valid
        // until freeaddrinfo, and ai_addr points to a sockaddr of ai_family.
        let ai = unsafe { &*cur };
        // SAFETY: getaddrinfo fills `ai_addr` with a sockaddr of the node's
        // `ai_family`, so the cast matches what it points to.
        let ip = unsafe {
            match ai.ai_family {
                libc::AF_INET => {
                    let sa = &*(ai.ai_addr as *const libc::sockaddr_in);
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))))
                }
                libc::AF_INET6 => {
                    let sa = &*(ai.ai_addr as *const libc::sockaddr_in6);
                    Some(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)))
                }
                _ => None,
            }
        };
        if let Some(ip) = ip {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        cur = ai.ai_next;
    }
    // SAFETY: `res` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

fn resolver_status(rc: i32) -> Status {
    match rc {
        libc::EAI_NONAME | libc::EAI_NODATA => Status::NotFound,
        libc::EAI_AGAIN => Status::Unreachable,
        libc::EAI_MEMORY => Status::ResourceExhausted,
        libc::EAI_FAMILY | libc::EAI_SERVICE | libc::EAI_BADFLAGS => Status::InvalidArgument,
        _ => Status::Other,
    }
}

fn gai_message(rc: i32) -> String {
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }
        .to_string_lossy()
        .into_owned()
}
