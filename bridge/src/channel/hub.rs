//! Hubs and their clients: a long-lived process (the hub) that serves many unrelated local
//! processes, each over a segment of its own, found by name.
//!
//! A hub listens on a Unix socket `<name>.sock` in a per-user directory (made 0700 and checked
//! to be this user's alone), holding `<name>.lock` for as long as it runs so that two hubs
//! cannot take one name. A client creates its segment as a runner does for its worker (on
//! Linux sealed memory nobody can resize), writes its hello into it, connects to the socket
//! and sends one attach message with the segment (the memfd itself, passed as `SCM_RIGHTS`;
//! elsewhere its name). The hub checks the user at the other end (the kernel's word, not the
//! client's), the protocol version and the segment, and answers `ok` or why not in one line;
//! then the two exchange hellos in the segment as a runner and its worker do (protocol
//! version only: a hub and its clients are different programs). The socket stays open for the
//! life of the connection: when either process ends, the other sees it closed at its next
//! liveness probe. A hung peer is found by its heartbeat, as between runner and worker.
//!
//! Roles: the client is the runner side (it asks), the hub the worker side (it answers).
//!
//! Invariants: connecting never waits on a hub that does not accept; every read of the socket
//! during the attach has a deadline; a segment refused is closed at once; nothing of an
//! attach that failed is left on either side (a memfd has no name; a named segment is
//! unlinked by the hub as soon as it is open, and by the client's drop otherwise).

#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::config::{deadline_after, ChannelConfig};
use super::control::Channel;
use super::error::StartError;
use super::hello;
use super::link::{Link, Peer};
use super::start::{assemble, mark_attached};
use crate::segment::{Role, Segment};
use crate::sys;

/// Environment variable naming the directory hubs are found in (default:
/// [`default_hub_dir`]).
pub const ENV_HUB_DIR: &str = "IBBRIDGE_HUB_DIR";

/// First line of every attach message.
const ATTACH_MAGIC: &str = "ibbridge-hub attach";
/// Longest attach message or answer.
const MAX_MESSAGE: usize = 1024;
/// How long a client whose attach could not be sent looks for the hub's refusal.
const REFUSAL_WAIT: Duration = Duration::from_millis(200);
/// Longest hub or client name.
pub const MAX_NAME: usize = 40;

/// The directory hubs are found in: `$IBBRIDGE_HUB_DIR`, else `ibbridge-<uid>/hubs` in the
/// user's temporary directory (the one the bridge records segment names in on macOS).
pub fn default_hub_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_HUB_DIR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    sys::shm::user_dir().join("hubs")
}

/// Whether `name` may name a hub or a client: 1 to [`MAX_NAME`] letters, digits, `-` or
/// `_` (no `.`: a hub puts its clients' names before their order references with one).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Why a hub could not start listening.
#[derive(Debug)]
#[non_exhaustive]
pub enum HubError {
    /// Not a valid hub name.
    Name(String),
    /// The directory cannot be made or is not this user's alone.
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        source: io::Error,
    },
    /// Another hub of this name runs.
    Running {
        /// The name.
        name: String,
        /// Its pid, as its lock file says.
        pid: Option<u32>,
    },
    /// The socket cannot be made.
    Bind {
        /// The socket's path.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::Name(name) => write!(
                f,
                "{name:?} is not a hub name: 1 to {MAX_NAME} letters, digits, '-' or '_'"
            ),
            HubError::Dir { dir, source } => {
                write!(
                    f,
                    "cannot use the hubs' directory {}: {source}",
                    dir.display()
                )
            }
            HubError::Running { name, pid } => match pid {
                Some(pid) => write!(f, "a hub named {name} is already running (pid {pid})"),
                None => write!(f, "a hub named {name} is already running"),
            },
            HubError::Bind { path, source } => {
                write!(f, "cannot listen on {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HubError::Dir { source, .. } | HubError::Bind { source, .. } => Some(source),
            HubError::Name(_) | HubError::Running { .. } => None,
        }
    }
}

/// Makes `dir` (and its parent) if needed, mode 0700, and checks that it is a directory of
/// this user's that nobody else may enter.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    for d in dir.parent().into_iter().chain([dir]) {
        match std::fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != sys::socket::own_uid() || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} must be a directory of this user's with mode 0700",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// The socket of hub `name` in `dir`.
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Whether a hub named `name` runs in `dir` (holds its lock now).
pub fn hub_running(dir: &Path, name: &str) -> bool {
    if !valid_name(name) {
        return false;
    }
    let Ok(lock) = File::open(dir.join(format!("{name}.lock"))) else {
        return false;
    };
    // Taken at once and let go as `lock` drops: nobody held it.
    !matches!(sys::shm::try_lock_exclusive(&lock), Ok(true))
}

/// A hub's listening socket, and the lock that makes its name its own.
#[derive(Debug)]
pub struct HubListener {
    listener: UnixListener,
    path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    name: String,
}

impl HubListener {
    /// Takes hub name `name` in `dir` (made and checked private) and listens there. Fails if
    /// another hub of that name runs; a socket left by a hub that died is replaced.
    pub fn bind(dir: &Path, name: &str) -> Result<HubListener, HubError> {
        if !valid_name(name) {
            return Err(HubError::Name(name.to_string()));
        }
        let dir_error = |source| HubError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        ensure_private_dir(dir).map_err(dir_error)?;
        let lock_path = dir.join(format!("{name}.lock"));
        let mut lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(dir_error)?;
        if !sys::shm::try_lock_exclusive(&lock).map_err(dir_error)? {
            let mut text = String::new();
            let _ = (&lock).take(64).read_to_string(&mut text);
            return Err(HubError::Running {
                name: name.to_string(),
                pid: text.trim().parse().ok(),
            });
        }
        let pid = std::process::id().to_string();
        let _ = lock
            .set_len(0)
            .and_then(|()| lock.write_all(pid.as_bytes()));
        let path = socket_path(dir, name);
        // Ours now: whatever socket is there was left by a hub of this name that died.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|source| HubError::Bind {
            path: path.clone(),
            source,
        })?;
        Ok(HubListener {
            listener,
            path,
            lock_path,
            _lock: lock,
            name: name.to_string(),
        })
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next connection (no longer than `timeout`: `Ok(None)` then). What comes
    /// of it is the caller's: read its request ([`Knock::request`]) on a thread of its own,
    /// so that a client that connects and says nothing holds up nobody.
    pub fn accept(&self, timeout: Duration) -> io::Result<Option<Knock>> {
        self.listener.set_nonblocking(true)?;
        let deadline = deadline_after(timeout);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    return Ok(Some(Knock { stream }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for HubListener {
    fn drop(&mut self) {
        // Still holding the lock: the socket and the lock file are ours to remove.
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// A connection accepted by a hub, not yet attached.
#[derive(Debug)]
pub struct Knock {
    stream: UnixStream,
}

/// What a client asks when it attaches.
#[derive(Debug)]
pub struct AttachRequest {
    /// The client's name, as it gave it (checked [`valid_name`]).
    pub client: String,
    /// The client's process, as the kernel tells it (Linux) or as the client says.
    pub pid: u32,
    /// The protocol version the client speaks.
    pub protocol_version: u32,
    segment: Handed,
}

#[derive(Debug)]
enum Handed {
    #[cfg(target_os = "linux")]
    Fd(std::os::fd::OwnedFd),
    Name(String),
}

/// Why an attach request was not read.
#[derive(Debug)]
#[non_exhaustive]
pub enum KnockError {
    /// The socket failed, or said nothing before the deadline.
    Io(io::Error),
    /// The process at the other end is another user's.
    OtherUser(u32),
    /// The message is not an attach request, or is malformed.
    Malformed(String),
}

impl fmt::Display for KnockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnockError::Io(e) => write!(f, "attach request not read: {e}"),
            KnockError::OtherUser(uid) => write!(f, "a process of user {uid} tried to attach"),
            KnockError::Malformed(why) => write!(f, "malformed attach request: {why}"),
        }
    }
}

impl std::error::Error for KnockError {}

impl Knock {
    /// Reads the client's attach request, waiting at most `timeout`. A process of another
    /// user, or a message that is not an attach request, is refused (with the reason sent to
    /// it) and the connection closed.
    pub fn request(&mut self, timeout: Duration) -> Result<AttachRequest, KnockError> {
        let (uid, kernel_pid) = sys::socket::peer(&self.stream).map_err(KnockError::Io)?;
        if uid != sys::socket::own_uid() {
            self.refuse("this hub serves only the user who runs it");
            return Err(KnockError::OtherUser(uid));
        }
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(KnockError::Io)?;
        let mut buf = [0u8; MAX_MESSAGE];
        let (n, fd) = sys::socket::recv_with_fd(&self.stream, &mut buf).map_err(KnockError::Io)?;
        let parsed = parse_attach(&buf[..n], kernel_pid, fd);
        if let Err(why) = &parsed {
            self.refuse(why);
        }
        parsed.map_err(KnockError::Malformed)
    }

    /// Refuses the client, telling it why in one line, and closes the connection.
    pub fn refuse(&mut self, why: &str) {
        let line: String = why.chars().filter(|c| *c != '\n').take(400).collect();
        let _ = self
            .stream
            .set_write_timeout(Some(Duration::from_millis(200)));
        let _ = self
            .stream
            .write_all(format!("refused {line}\n").as_bytes());
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Attaches the client of `request`: takes its segment over, answers `ok`, exchanges
    /// hellos (protocol version only) and starts watching it. On an error the client is told
    /// why and nothing is left.
    pub fn admit(
        mut self,
        request: AttachRequest,
        cfg: &ChannelConfig,
    ) -> Result<Channel, StartError> {
        if request.protocol_version != cfg.protocol_version {
            self.refuse(&mismatch(cfg.protocol_version, request.protocol_version));
            return Err(StartError::ProtocolMismatch {
                ours: cfg.protocol_version,
                theirs: request.protocol_version,
            });
        }
        let segment = match request.segment {
            #[cfg(target_os = "linux")]
            Handed::Fd(fd) => Segment::receive(
                fd,
                &format!("client {} (pid {})", request.client, request.pid),
            ),
            Handed::Name(name) => Segment::open(&name),
        };
        let segment = match segment {
            Ok(s) => s,
            Err(e) => {
                self.refuse(&format!("its shared memory cannot be used: {e}"));
                return Err(StartError::Segment(e));
            }
        };
        let _ = segment.unlink();
        if segment.protocol_version() != cfg.protocol_version {
            self.refuse(&mismatch(cfg.protocol_version, segment.protocol_version()));
            return Err(StartError::ProtocolMismatch {
                ours: cfg.protocol_version,
                theirs: segment.protocol_version(),
            });
        }
        mark_attached(&segment);
        let (mut tx, mut rx) = segment
            .endpoints(Role::Worker)
            .map_err(StartError::Segment)?;
        self.stream
            .write_all(format!("ok pid={}\n", std::process::id()).as_bytes())
            .map_err(StartError::Spawn)?;
        // Only the liveness probes read it from here on, without waiting.
        self.stream
            .set_nonblocking(true)
            .map_err(StartError::Spawn)?;
        let stream = Mutex::new(self.stream);
        let deadline = deadline_after(cfg.start_timeout);
        let theirs = hello::receive(
            &mut rx,
            deadline,
            || match sys::socket::closed(&stream.lock()) {
                true => Err(StartError::RunnerGone),
                false => Ok(()),
            },
            || StartError::Timeout {
                waited: cfg.start_timeout,
                output: Vec::new(),
            },
        )?;
        hello::send(&mut tx, cfg)?;
        hello::check_protocol(&theirs, Some(segment.protocol_version()), cfg)?;
        let peer = Peer::Socket {
            pid: request.pid,
            stream,
        };
        let close =
            Link::start(segment, Role::Worker, cfg, peer).map_err(|source| StartError::Thread {
                name: "liveness",
                source,
            })?;
        Ok(assemble(tx, rx, close))
    }
}

fn mismatch(ours: u32, theirs: u32) -> String {
    format!("the hub speaks protocol version {ours}, the client {theirs}: use the same release")
}

/// Reads an attach message: its magic line, then `key=value` lines.
fn parse_attach(
    bytes: &[u8],
    kernel_pid: Option<u32>,
    fd: Option<std::os::fd::OwnedFd>,
) -> Result<AttachRequest, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(ATTACH_MAGIC) {
        return Err("not an attach request".to_string());
    }
    let (mut client, mut pid, mut version, mut segment) = (None, None, None, None);
    for line in lines {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line:?} is not key=value"))?;
        match key {
            "client" => client = Some(value.to_string()),
            "pid" => pid = value.parse::<u32>().ok(),
            "protocol" => version = value.parse::<u32>().ok(),
            "segment" => segment = Some(value.to_string()),
            _ => {}
        }
    }
    let client = client.filter(|c| valid_name(c)).ok_or_else(|| {
        format!("no valid client name (1 to {MAX_NAME} letters, digits, '-', '_')")
    })?;
    let protocol_version = version.ok_or("no protocol version")?;
    let pid = kernel_pid.or(pid).ok_or("no pid")?;
    let segment = match (segment.as_deref(), fd) {
        #[cfg(target_os = "linux")]
        (Some("fd"), Some(fd)) => Handed::Fd(fd),
        (Some(name), None) if crate::sys::shm::is_segment_name(name.trim_start_matches('/')) => {
            Handed::Name(name.to_string())
        }
        _ => return Err("no shared memory handed over".to_string()),
    };
    Ok(AttachRequest {
        client,
        pid,
        protocol_version,
        segment,
    })
}

/// Attaches this process, as client `client`, to hub `hub` in `dir`: creates its segment,
/// hands it over and exchanges hellos (protocol version only). Never waits on a hub that does
/// not accept; the attach as a whole takes at most `cfg.start_timeout`.
pub fn attach_to_hub(
    dir: &Path,
    hub: &str,
    client: &str,
    cfg: &ChannelConfig,
) -> Result<Channel, StartError> {
    if !valid_name(hub) || !valid_name(client) {
        return Err(StartError::Refused {
            hub: hub.to_string(),
            reason: format!(
                "hub and client names are 1 to {MAX_NAME} letters, digits, '-' or '_' \
                 (hub {hub:?}, client {client:?})"
            ),
        });
    }
    let path = socket_path(dir, hub);
    let mut stream = sys::socket::connect(&path).map_err(|source| StartError::NoHub {
        hub: hub.to_string(),
        path: path.clone(),
        source,
    })?;
    crate::segment::sweep_stale();
    #[cfg(target_os = "linux")]
    let segment = match Segment::create_sealed(cfg.geometry, cfg.protocol_version) {
        Err(crate::segment::SegmentError::Create(e)) => {
            tracing::warn!("no sealed shared memory ({e}): a named segment instead");
            Segment::create(cfg.geometry, cfg.protocol_version)
        }
        other => other,
    };
    #[cfg(not(target_os = "linux"))]
    let segment = Segment::create(cfg.geometry, cfg.protocol_version);
    let segment: Arc<Segment> = segment.map_err(StartError::Segment)?;
    let (mut tx, mut rx) = segment
        .endpoints(Role::Runner)
        .map_err(StartError::Segment)?;
    hello::send(&mut tx, cfg)?;
    let mut message = format!(
        "{ATTACH_MAGIC}\nprotocol={}\nclient={client}\npid={}\n",
        cfg.protocol_version,
        std::process::id()
    );
    #[cfg(target_os = "linux")]
    let fd = segment.sealed_fd();
    #[cfg(not(target_os = "linux"))]
    let fd: Option<std::os::fd::BorrowedFd<'_>> = None;
    match fd {
        Some(_) => message.push_str("segment=fd\n"),
        None => message.push_str(&format!("segment={}\n", segment.name())),
    }
    let gone = |source: io::Error| StartError::NoHub {
        hub: hub.to_string(),
        path: path.clone(),
        source,
    };
    if let Err(e) = sys::socket::send_with_fd(&stream, message.as_bytes(), fd) {
        // A hub that refuses before reading (too many attaches under way) has written why
        // and closed: its line is waiting to be read.
        return Err(match read_line(&mut stream, deadline_after(REFUSAL_WAIT)) {
            Ok(answer) => match answer.split_once(' ') {
                Some(("refused", why)) => StartError::Refused {
                    hub: hub.to_string(),
                    reason: why.to_string(),
                },
                _ => gone(e),
            },
            Err(_) => gone(e),
        });
    }
    let deadline = deadline_after(cfg.start_timeout);
    let answer = read_line(&mut stream, deadline).map_err(gone)?;
    let hub_pid = match answer.split_once(' ') {
        Some(("ok", rest)) => rest
            .strip_prefix("pid=")
            .and_then(|p| p.trim().parse::<u32>().ok())
            .ok_or_else(|| StartError::Refused {
                hub: hub.to_string(),
                reason: format!("unreadable answer {answer:?}"),
            })?,
        Some(("refused", why)) => {
            return Err(StartError::Refused {
                hub: hub.to_string(),
                reason: why.to_string(),
            })
        }
        _ => {
            return Err(StartError::Refused {
                hub: hub.to_string(),
                reason: format!("unreadable answer {answer:?}"),
            })
        }
    };
    let _ = segment.unlink();
    // Only the liveness probes read it from here on, without waiting.
    stream.set_nonblocking(true).map_err(gone)?;
    let stream = Mutex::new(stream);
    let theirs = hello::receive(
        &mut rx,
        deadline,
        || match sys::socket::closed(&stream.lock()) {
            true => Err(StartError::RunnerGone),
            false => Ok(()),
        },
        || StartError::Timeout {
            waited: cfg.start_timeout,
            output: Vec::new(),
        },
    )?;
    hello::check_protocol(&theirs, None, cfg)?;
    let peer = Peer::Socket {
        pid: hub_pid,
        stream,
    };
    let close =
        Link::start(segment, Role::Runner, cfg, peer).map_err(|source| StartError::Thread {
            name: "liveness",
            source,
        })?;
    Ok(assemble(tx, rx, close))
}

/// Reads one line (at most [`MAX_MESSAGE`] bytes) before `deadline`.
fn read_line(stream: &mut UnixStream, deadline: Instant) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_MESSAGE {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the hub did not answer in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the hub closed the connection without an answer",
                ))
            }
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the hub did not answer in time",
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[cfg(test)]
mod tests;
