//! What `connect` and `bind` take: an address as the driver knows it
//! (`SocketAddr`, a Unix path, [`SocketAddress`]), `(ip, port)`, or a host
//! and port — `"example.org:443"`, `("localhost", 8080)` — that
//! [`TcpStream::connect`](super::TcpStream::connect) looks up through the
//! driver's own non-blocking DNS, trying each address in turn as std's
//! `TcpStream::connect` does. `bind` needs an address, not a name: a host
//! name there is [`Status::InvalidArgument`] (look it up with
//! [`lookup`](super::lookup) first).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::{Error, Result, SocketAddress, Status};

/// An address, or a host and port to look up (see the module
/// documentation). Implemented for `SocketAddr`, [`SocketAddress`], `&Path`,
/// `PathBuf`, `(IpAddr | Ipv4Addr | Ipv6Addr, u16)`, `(&str | String, u16)`,
/// and `&str` / `String` in the form `"host:port"` (`"[::1]:80"` for an IPv6
/// literal).
pub trait ToAddress: sealed::Sealed {}

pub(crate) mod sealed {
    /// Where to connect: an address, or a name and port to look up.
    pub enum Target {
        Address(crate::SocketAddress),
        Host(String, u16),
    }

    pub trait Sealed {
        fn target(self) -> crate::Result<Target>;
    }
}

use sealed::{Sealed, Target};

impl Target {
    /// The address, for calls that cannot look a name up (`bind`).
    pub(crate) fn address(self) -> Result<SocketAddress> {
        match self {
            Target::Address(a) => Ok(a),
            Target::Host(..) => Err(Error::new(Status::InvalidArgument)),
        }
    }
}

macro_rules! to_address {
    ($($t:ty => |$v:ident| $e:expr;)*) => {$(
        impl ToAddress for $t {}
        impl Sealed for $t {
            fn target(self) -> Result<Target> {
                let $v = self;
                $e
            }
        }
    )*};
}

to_address! {
    SocketAddr => |a| Ok(Target::Address(a.into()));
    SocketAddress => |a| Ok(Target::Address(a));
    &Path => |p| Ok(Target::Address(p.into()));
    PathBuf => |p| Ok(Target::Address(p.into()));
    (IpAddr, u16) => |a| Ok(Target::Address(SocketAddr::from(a).into()));
    (Ipv4Addr, u16) => |a| Ok(Target::Address(SocketAddr::from(a).into()));
    (Ipv6Addr, u16) => |a| Ok(Target::Address(SocketAddr::from(a).into()));
    (&str, u16) => |a| Ok(host_port(a.0, a.1));
    (String, u16) => |a| Ok(host_port(&a.0, a.1));
    &str => |s| parse(s);
    String => |s| parse(&s);
    &String => |s| parse(s);
}

/// A literal IP address as an address, anything else as a name to look up.
fn host_port(host: &str, port: u16) -> Target {
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match literal.parse::<IpAddr>() {
        Ok(ip) => Target::Address(SocketAddr::new(ip, port).into()),
        Err(_) => Target::Host(host.to_owned(), port),
    }
}

/// `"ip:port"`, `"[ipv6]:port"` or `"host:port"`.
fn parse(s: &str) -> Result<Target> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(Target::Address(a.into()));
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(|| Error::new(Status::InvalidArgument))?;
    let port: u16 = port.parse().map_err(|_| Error::new(Status::InvalidArgument))?;
    if host.is_empty() || host.contains(':') {
        return Err(Error::new(Status::InvalidArgument));
    }
    Ok(host_port(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(t: impl ToAddress) -> Result<Target> {
        t.target()
    }

    #[test]
    fn strings_and_pairs_parse() {
        let addr = |t: Result<Target>| match t {
            Ok(Target::Address(SocketAddress::Inet(a))) => Some(a),
            _ => None,
        };
        let host = |t: Result<Target>| match t {
            Ok(Target::Host(h, p)) => Some((h, p)),
            _ => None,
        };
        assert_eq!(addr(target("127.0.0.1:80")), Some("127.0.0.1:80".parse().unwrap()));
        assert_eq!(addr(target("[::1]:443")), Some("[::1]:443".parse().unwrap()));
        assert_eq!(addr(target(("::1", 9))), Some("[::1]:9".parse().unwrap()));
        assert_eq!(addr(target((Ipv4Addr::LOCALHOST, 7))), Some("127.0.0.1:7".parse().unwrap()));
        assert_eq!(host(target("localhost:8080")), Some(("localhost".to_owned(), 8080)));
        assert_eq!(host(target(("example.invalid", 1))), Some(("example.invalid".to_owned(), 1)));
        for bad in ["localhost", "localhost:http", ":80", "::1:80", "host:99999"] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }
}
