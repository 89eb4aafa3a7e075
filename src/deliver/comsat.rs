//! The COMSAT (biff) notification: after a delivery procmail sends one UDP
//! datagram `user@offset:folder` to the comsat service, so that biff(1)
//! can tell the user (procmailrc(5) COMSAT, spec §9).
//!
//! Owns reading `$COMSAT` into an address, building the datagram and
//! sending it. It never waits for an answer and never makes a delivery
//! fail: every error just means no notification.

use std::net::{Ipv4Addr, SocketAddrV4, ToSocketAddrs, UdpSocket};

use crate::rc::vars::{parse_num, strtol};

/// The biff service's port: procmail's default, never looked up.
const BIFF_PORT: u16 = 512;

/// Where `$COMSAT` says to send the notification; `None` when it is off or
/// names a service or host that cannot be found.
///
/// Checked against procmail 3.23pre (Debian) with a listener on
/// 127.0.0.1:
/// * unset, or a value without `@` that does not read as 0 (`yes`, `on`,
///   `2`, `-1`, empty, even `5599`): `biff` at localhost (port 512);
/// * `no`, `off`, `0`, `n...`, `f...`, `d...`: off;
/// * `service@host`: an empty service is `biff`, a number is the port
///   (strtol: leading digits), a name is looked up as a UDP service
///   (`comsat@` is port 512) and an unknown one turns it off; an empty host
///   is 127.0.0.1, another is resolved (IPv4) and an unknown one turns it
///   off.
pub fn target(comsat: Option<&[u8]>) -> Option<SocketAddrV4> {
    // The biff port without a services lookup, for the default and for an
    // empty service: procmail 3.23pre reads /etc/services only for a
    // service it is given by name (checked with strace: `COMSAT=yes` and
    // `COMSAT=@` send to 512 without opening it, `COMSAT=biff@` opens it).
    let default = SocketAddrV4::new(Ipv4Addr::LOCALHOST, BIFF_PORT);
    let Some(value) = comsat else {
        return Some(default);
    };
    let Some(at) = value.iter().position(|&b| b == b'@') else {
        return (parse_num(value, -1) != 0).then_some(default);
    };
    let (service, host) = (&value[..at], &value[at + 1..]);
    let ip = if host.is_empty() {
        Ipv4Addr::LOCALHOST
    } else {
        resolve(host)?
    };
    let port = if service.is_empty() {
        BIFF_PORT
    } else if let Some(n) = strtol(service) {
        // procmail keeps the low 16 bits (`(short)` of a long).
        n as u16
    } else {
        lookup_service(service)?
    };
    Some(SocketAddrV4::new(ip, port))
}

/// The first IPv4 address of `host` (procmail uses gethostbyname).
fn resolve(host: &[u8]) -> Option<Ipv4Addr> {
    let host = std::str::from_utf8(host).ok()?;
    (host, 0).to_socket_addrs().ok()?.find_map(|a| match a {
        std::net::SocketAddr::V4(v4) => Some(*v4.ip()),
        std::net::SocketAddr::V6(_) => None,
    })
}

/// The UDP port of the service `name` from the services database.
fn lookup_service(name: &[u8]) -> Option<u16> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: both arguments are NUL-terminated strings; the result points
    // into static storage of libc, read at once. deliver is single-threaded
    // when it delivers, so nothing else calls getservbyname meanwhile.
    unsafe {
        let ent = libc::getservbyname(name.as_ptr(), c"udp".as_ptr());
        if ent.is_null() {
            None
        } else {
            Some(u16::from_be((*ent).s_port as u16))
        }
    }
}

/// Makes the lookups a notice makes once, so that a process forked after
/// it (a zygote's child) finds glibc's name service modules loaded (or
/// known to be missing) instead of searching for them again.
pub(super) fn warm_up() {
    let _ = lookup_service(b"biff");
    let _ = resolve(b"localhost");
}

/// The datagram: `logname@offset:folder`, without the offset when the last
/// delivery was not into a file, cut to `linebuf - 1` bytes as procmail's
/// buffer cuts it; `None` when `logname` is empty or does not fit.
pub fn message(
    logname: &[u8],
    offset: Option<u64>,
    folder: &[u8],
    linebuf: usize,
) -> Option<Vec<u8>> {
    if logname.is_empty() || logname.len() + 2 > linebuf {
        return None;
    }
    let mut m = logname.to_vec();
    m.push(b'@');
    if let Some(off) = offset {
        m.extend_from_slice(off.to_string().as_bytes());
    }
    m.push(b':');
    m.extend_from_slice(folder);
    m.truncate(linebuf.saturating_sub(1));
    Some(m)
}

/// Sends `msg` to `to`; true when a socket could be made (procmail logs
/// `Notified comsat` then, whether or not the datagram arrives).
pub fn send(to: SocketAddrV4, msg: &[u8]) -> bool {
    match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        Ok(sock) => {
            let _ = sock.send_to(msg, to);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comsat_values_read_like_procmail() {
        // Each checked against procmail 3.23pre with listeners on
        // 127.0.0.1 ports 512 and 5599.
        let local = |p| Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
        let cases: &[(Option<&[u8]>, Option<SocketAddrV4>)] = &[
            (None, local(512)),
            (Some(b"yes"), local(512)),
            (Some(b"on"), local(512)),
            (Some(b""), local(512)),
            (Some(b"5599"), local(512)),
            (Some(b"-1"), local(512)),
            (Some(b"all"), local(512)),
            (Some(b"x"), local(512)),
            (Some(b"no"), None),
            (Some(b"off"), None),
            (Some(b"0"), None),
            (Some(b" 0"), None),
            (Some(b"0x"), None),
            (Some(b"false"), None),
            (Some(b"disable"), None),
            (Some(b"5599@"), local(5599)),
            (Some(b"5599@127.0.0.1"), local(5599)),
            (Some(b"5599@localhost"), local(5599)),
            (Some(b"@127.0.0.1"), local(512)),
            (Some(b"biff@"), local(512)),
            (Some(b"comsat@"), local(512)),
            (Some(b"nosuch@"), None),
            (Some(b"5599@nosuchhost.invalid"), None),
        ];
        for &(value, want) in cases {
            let got = target(value);
            assert_eq!(got, want, "{:?}", value.map(String::from_utf8_lossy));
        }
    }

    #[test]
    fn message_is_user_at_offset_colon_folder() {
        // Checked: `root@54:/tmp/vg/mbox`, a pipe `root@:/tmp/vg/ cat`.
        let got = message(b"root", Some(54), b"/tmp/vg/mbox", 2048);
        assert_eq!(got.as_deref(), Some(&b"root@54:/tmp/vg/mbox"[..]));
        let got = message(b"root", None, b"**Bounced**", 2048);
        assert_eq!(got.as_deref(), Some(&b"root@:**Bounced**"[..]));
        assert_eq!(message(b"", Some(0), b"/x", 2048), None);
        assert_eq!(message(b"abc", Some(0), b"/x", 4), None);
        let got = message(b"abc", Some(0), b"/xyz", 8);
        assert_eq!(got.as_deref(), Some(&b"abc@0:/"[..]));
    }

    #[test]
    fn send_reaches_a_listener() {
        let l = UdpSocket::bind("127.0.0.1:0").unwrap();
        l.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = match l.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        assert!(send(to, b"u@0:/x"));
        let mut buf = [0u8; 64];
        let n = l.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"u@0:/x");
    }
}
