//! Blocking name resolution with `GetAddrInfoW`, run on the worker pool (never
//! on the loop thread).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use windows_sys::Win32::Networking::WinSock::{
    FreeAddrInfoW, GetAddrInfoW, ADDRINFOW, AF_INET, AF_INET6, AF_UNSPEC, SOCKADDR_IN,
    SOCKADDR_IN6, SOCK_STREAM, WSAEINVAL, WSAHOST_NOT_FOUND, WSANO_DATA, WSATRY_AGAIN,
    WSA_NOT_ENOUGH_MEMORY,
};

use crate::error::Error;
use crate::Status;

/// Every IPv4 and IPv6 address of `name`, in the resolver's order, without
/// duplicates. A failure keeps the resolver's WinSock code.
pub(crate) fn lookup(name: &str) -> Result<Vec<IpAddr>, Error> {
    if name.contains('\0') {
        return Err(Error::new(Status::InvalidArgument));
    }
    super::wsa_startup();
    let wide: Vec<u16> = name.encode_utf16().chain(std::iter::once(0)).collect();
    // SAFETY: all-zero hints are valid; we set the family and socket type.
    let mut hints: ADDRINFOW = unsafe { std::mem::zeroed() };
    hints.ai_family = AF_UNSPEC as i32;
    hints.ai_socktype = SOCK_STREAM as i32;
    let mut res: *mut ADDRINFOW = std::ptr::null_mut();
    // SAFETY: a NUL-terminated name, initialised hints; `res` is freed below.
    let rc = unsafe { GetAddrInfoW(wide.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        let status = match rc {
            WSAHOST_NOT_FOUND | WSANO_DATA => Status::NotFound,
            WSATRY_AGAIN => Status::Unreachable,
            WSA_NOT_ENOUGH_MEMORY => Status::ResourceExhausted,
            WSAEINVAL => Status::InvalidArgument,
            _ => Status::Other,
        };
        let message = std::io::Error::from_raw_os_error(rc).to_string();
        return Err(Error::resolver(status, rc, message));
    }
    let mut out = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list GetAddrInfoW returned, valid until
        // FreeAddrInfoW; ai_addr points to a sockaddr of ai_family.
        let ai = unsafe { &*cur };
        let ip = unsafe {
            match ai.ai_family as u16 {
                AF_INET => {
                    let sa = &*(ai.ai_addr as *const SOCKADDR_IN);
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sa.sin_addr.S_un.S_addr,
                    ))))
                }
                AF_INET6 => {
                    let sa = &*(ai.ai_addr as *const SOCKADDR_IN6);
                    Some(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.u.Byte)))
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
    // SAFETY: `res` came from a successful GetAddrInfoW and is freed once.
    unsafe { FreeAddrInfoW(res) };
    Ok(out)
}
