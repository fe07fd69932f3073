//! Unix-domain stream sockets as a hub and its clients use them: a connection that never
//! waits on a hub that does not accept, a descriptor passed along with a message
//! (`SCM_RIGHTS`), and the user at the other end.
//!
//! | concept | Linux | macOS |
//! |---|---|---|
//! | connecting without waiting on a full queue | non-blocking `connect`: `EAGAIN` | the same (`EAGAIN` / `ECONNREFUSED`) |
//! | a descriptor received is close-on-exec | `MSG_CMSG_CLOEXEC` | `FD_CLOEXEC` set at once |
//! | who is at the other end | `SO_PEERCRED`: uid and pid | `getpeereid`: uid (the pid comes from the peer's own message) |
//!
//! Invariants: every descriptor received is owned by exactly one `OwnedFd` (extra ones, and
//! any of a message cut short, are closed at once); no call here waits longer than the
//! socket's own timeouts.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Room for the control message of one descriptor (`CMSG_SPACE(sizeof(int))`, rounded up
/// generously: 64 bytes hold it on every platform).
const CONTROL_BYTES: usize = 64;

/// The effective user id of this process.
pub(crate) fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Connects to the listening socket at `path` without ever waiting for it to accept: a
/// listener whose queue is full (a hub stopped or swamped) is `WouldBlock`, one that is gone
/// `ConnectionRefused` or `NotFound`. The stream returned is blocking and close-on-exec.
pub(crate) fn connect(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeros is a valid (empty) address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("socket path {} is too long or not a path", path.display()),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket() has no memory preconditions; the result is checked below.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor socket() just made for us and nobody else holds.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    set_flag(
        fd.as_raw_fd(),
        libc::F_GETFD,
        libc::F_SETFD,
        libc::FD_CLOEXEC,
        true,
    )?;
    set_flag(
        fd.as_raw_fd(),
        libc::F_GETFL,
        libc::F_SETFL,
        libc::O_NONBLOCK,
        true,
    )?;
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes that lives across the call.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => io::Error::new(
                io::ErrorKind::WouldBlock,
                "the listener is not accepting (its queue is full)",
            ),
            _ => e,
        });
    }
    set_flag(
        fd.as_raw_fd(),
        libc::F_GETFL,
        libc::F_SETFL,
        libc::O_NONBLOCK,
        false,
    )?;
    Ok(UnixStream::from(fd))
}

/// Sets or clears `flag` in the flags `get`/`set` read and write (`F_GETFD`/`F_SETFD` or
/// `F_GETFL`/`F_SETFL`) of descriptor `fd`.
fn set_flag(
    fd: RawFd,
    get: libc::c_int,
    set: libc::c_int,
    flag: libc::c_int,
    on: bool,
) -> io::Result<()> {
    // SAFETY: fcntl with an integer argument on a descriptor the caller owns.
    let flags = unsafe { libc::fcntl(fd, get) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on { flags | flag } else { flags & !flag };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, set, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `bytes` on `stream` in one message, with descriptor `fd` attached if given (the
/// receiver gets its own descriptor of the same open file).
pub(crate) fn send_with_fd(
    stream: &UnixStream,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u64; CONTROL_BYTES / 8];
    // SAFETY: msghdr is plain data; all zeros is an empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        let raw: RawFd = fd.as_raw_fd();
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        debug_assert!(space <= CONTROL_BYTES);
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is `space` bytes, 8-aligned and zeroed, and the header
        // says so: CMSG_FIRSTHDR returns its start, which holds one cmsghdr and its data.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), raw);
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (the caller's bytes) and `control`, both alive across
        // the call; sendmsg only reads them.
        let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, send_flags()) };
        if sent >= 0 {
            if sent as usize != bytes.len() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the message was sent only in part",
                ));
            }
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(target_os = "linux")]
fn send_flags() -> libc::c_int {
    // A peer gone is an error, not a SIGPIPE.
    libc::MSG_NOSIGNAL
}

#[cfg(not(target_os = "linux"))]
fn send_flags() -> libc::c_int {
    0
}

/// Receives one message into `buf` (waiting at most the stream's read timeout) and the
/// descriptor attached to it, if any. Returns the bytes read (0: the peer closed).
pub(crate) fn recv_with_fd(
    stream: &UnixStream,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; CONTROL_BYTES / 8];
    // SAFETY: msghdr is plain data; all zeros is an empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL_BYTES as _;
    let read = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both alive and writable
        // for the lengths given; recvmsg writes at most those.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, recv_flags()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut received: Vec<OwnedFd> = Vec::new();
    // SAFETY: recvmsg filled `control` and set msg_controllen to what it wrote; the CMSG
    // macros walk exactly that; every descriptor in an SCM_RIGHTS message is new in this
    // process and owned by nobody yet, so each is taken into an OwnedFd once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header = libc::CMSG_LEN(0) as usize;
                let count = ((*cmsg).cmsg_len as usize).saturating_sub(header)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    if raw >= 0 {
                        received.push(OwnedFd::from_raw_fd(raw));
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // What was received is closed as `received` drops.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the message's descriptors were cut short",
        ));
    }
    if received.len() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} descriptors sent where one was expected", received.len()),
        ));
    }
    let fd = received.pop();
    #[cfg(not(target_os = "linux"))]
    if let Some(fd) = &fd {
        set_flag(
            fd.as_raw_fd(),
            libc::F_GETFD,
            libc::F_SETFD,
            libc::FD_CLOEXEC,
            true,
        )?;
    }
    Ok((read, fd))
}

#[cfg(target_os = "linux")]
fn recv_flags() -> libc::c_int {
    libc::MSG_CMSG_CLOEXEC
}

#[cfg(not(target_os = "linux"))]
fn recv_flags() -> libc::c_int {
    0
}

/// Whether the other end of `stream`, a non-blocking stream nobody writes to once attached,
/// let go of it: it closed (its process ended), or it wrote something, which no peer of ours
/// does (taken as the connection given up, not read any further).
pub(crate) fn closed(mut stream: &UnixStream) -> bool {
    use std::io::Read;
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// The user at the other end of `stream`, and its process where the system tells it.
#[cfg(target_os = "linux")]
pub(crate) fn peer(stream: &UnixStream) -> io::Result<(u32, Option<u32>)> {
    // SAFETY: ucred is plain data; all zeros is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, u32::try_from(cred.pid).ok().filter(|p| *p > 0)))
}

/// The user at the other end of `stream` (macOS tells no pid here).
#[cfg(not(target_os = "linux"))]
pub(crate) fn peer(stream: &UnixStream) -> io::Result<(u32, Option<u32>)> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: getpeereid writes one uid and one gid into the two locals.
    if unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((uid, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;

    fn socket_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ibbridge-sock-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn a_descriptor_travels_with_its_message_and_is_close_on_exec() {
        let path = socket_path("fd");
        let listener = UnixListener::bind(&path).unwrap();
        let client = connect(&path).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut file = tempfile_in(&path);
        file.write_all(b"shared").unwrap();
        send_with_fd(&client, b"hello", Some(file.as_fd())).unwrap();
        let mut buf = [0u8; 16];
        let (n, fd) = recv_with_fd(&server, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let fd = fd.expect("a descriptor");
        // SAFETY: (test) F_GETFD on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        let text = std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        if cfg!(target_os = "linux") {
            assert_eq!(text.unwrap(), "shared");
        }
        // A message without one has none; a closed peer reads 0.
        send_with_fd(&client, b"bye", None).unwrap();
        let (n, fd) = recv_with_fd(&server, &mut buf).unwrap();
        assert_eq!((&buf[..n], fd.is_none()), (&b"bye"[..], true));
        drop(client);
        assert_eq!(recv_with_fd(&server, &mut buf).unwrap().0, 0);
        let (uid, pid) = peer(&server).unwrap();
        assert_eq!(uid, own_uid());
        if cfg!(target_os = "linux") {
            assert_eq!(pid, Some(std::process::id()));
        }
    }

    #[test]
    fn a_listener_that_does_not_accept_is_never_waited_on() {
        let path = socket_path("full");
        let listener = UnixListener::bind(&path).unwrap();
        // Nobody accepts: the queue fills, and then connecting fails at once.
        let mut held = Vec::new();
        let refused = (0..100_000).find_map(|_| match connect(&path) {
            Ok(s) => {
                held.push(s);
                None
            }
            Err(e) => Some(e),
        });
        let e = refused.expect("the queue filled");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        drop(listener);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(
            connect(&path).unwrap_err().kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
        ));
    }

    fn tempfile_in(near: &Path) -> std::fs::File {
        let path = near.with_extension("data");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        file
    }
}
