//! Win32 and WinSock error codes in the contract's words, where the standard
//! library's `ErrorKind` is too coarse.

use crate::Status;

pub(crate) fn status_of_code(code: i32) -> Option<Status> {
    Some(match code {
        // WinSock.
        10035 => Status::WouldBlock,                                   // WSAEWOULDBLOCK
        10053 | 10054 | 10057 | 10058 | 10050 => Status::Disconnected, // ABORTED, RESET, NOTCONN, SHUTDOWN, NETDOWN
        10061 => Status::Refused,                                      // WSAECONNREFUSED
        10060 => Status::TimedOut,                                     // WSAETIMEDOUT
        10048 => Status::AddressInUse,                                 // WSAEADDRINUSE
        10049 | 10051 | 10065 => Status::Unreachable,                  // ADDRNOTAVAIL, NETUNREACH, HOSTUNREACH
        10024 | 10055 => Status::ResourceExhausted,                    // WSAEMFILE, WSAENOBUFS
        10040 => Status::TooLarge,                                     // WSAEMSGSIZE
        10013 => Status::NotAllowed,                                   // WSAEACCES
        10038 | 10009 => Status::InvalidHandle,                        // WSAENOTSOCK, WSAEBADF
        10045 | 10047 | 10043 | 10044 | 10042 => Status::NotSupported, // OPNOTSUPP, AFNOSUPPORT, PROTONOSUPPORT, SOCKTNOSUPPORT, NOPROTOOPT
        10022 => Status::InvalidArgument,                              // WSAEINVAL
        // Win32.
        2 | 3 => Status::NotFound,                    // FILE_NOT_FOUND, PATH_NOT_FOUND
        267 => Status::NotFound,                      // DIRECTORY (a bad directory name; as libuv)
        5 => Status::NotAllowed,                      // ACCESS_DENIED
        6 => Status::InvalidHandle,                   // INVALID_HANDLE
        32 | 33 => Status::SharingViolation,          // SHARING_VIOLATION, LOCK_VIOLATION
        38 => Status::EndOfFile,                      // HANDLE_EOF
        64 | 109 | 232 | 233 => Status::Disconnected, // NETNAME_DELETED, BROKEN_PIPE, NO_DATA, PIPE_NOT_CONNECTED
        80 | 183 => Status::AlreadyExists,            // FILE_EXISTS, ALREADY_EXISTS
        112 => Status::NoSpace,                       // DISK_FULL
        121 | 1460 => Status::TimedOut,               // SEM_TIMEOUT, TIMEOUT
        1225 => Status::Refused,                      // CONNECTION_REFUSED
        4 | 8 | 14 => Status::ResourceExhausted,      // TOO_MANY_OPEN_FILES, NOT_ENOUGH_MEMORY, OUTOFMEMORY
        50 => Status::NotSupported,                   // NOT_SUPPORTED
        87 | 123 => Status::InvalidArgument,          // INVALID_PARAMETER, INVALID_NAME
        _ => return None,
    })
}
