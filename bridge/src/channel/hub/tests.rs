//! Tests of a hub and its clients in one process: the attach, each refusal, and what a
//! client that knocks and says nothing, or hands over the wrong memory, gets.

#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::thread::JoinHandle;

use super::*;
use crate::channel::{GoneReason, RecvError};
use crate::protocol::{Body, Envelope, Request};

fn hub_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("ibbridge-hub-tests-{}", std::process::id()))
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn cfg() -> ChannelConfig {
    ChannelConfig {
        hang_timeout: Duration::from_millis(900),
        start_timeout: Duration::from_secs(5),
        ..ChannelConfig::default()
    }
}

/// Admits the next client of `listener` on a thread (as a hub does), with `cfg`.
fn admit_one(
    listener: Arc<HubListener>,
    cfg: ChannelConfig,
) -> JoinHandle<Result<(String, Channel), String>> {
    std::thread::spawn(move || {
        let mut knock = listener
            .accept(Duration::from_secs(5))
            .map_err(|e| e.to_string())?
            .ok_or("nobody knocked")?;
        let request = knock
            .request(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let name = request.client.clone();
        knock
            .admit(request, &cfg)
            .map(|c| (name, c))
            .map_err(|e| e.to_string())
    })
}

fn ping(id: u64) -> Envelope {
    Envelope {
        id,
        body: Body::Request(Request::Ping {
            payload: vec![1, 2, 3],
        }),
    }
}

#[test]
fn a_client_attaches_by_name_and_both_see_the_other_close() {
    let dir = hub_dir("attach");
    let listener = Arc::new(HubListener::bind(&dir, "desk").unwrap());
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let hub = admit_one(listener.clone(), cfg());
    let client = attach_to_hub(&dir, "desk", "trader-1", &cfg()).unwrap();
    let (name, hub_end) = hub.join().unwrap().unwrap();
    assert_eq!(name, "trader-1");
    assert_eq!(hub_end.control.peer_pid(), std::process::id());
    assert_eq!(client.control.peer_pid(), std::process::id());
    let Channel {
        mut sender,
        receiver: _keep,
        control,
    } = client;
    let mut hub_rx = hub_end.receiver;
    for id in 1..=3 {
        sender.send(&ping(id), None).unwrap();
    }
    for id in 1..=3 {
        let env: Envelope = hub_rx
            .recv(Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert_eq!(env, ping(id));
    }
    // The client closes: the hub's end fails with Closed once everything sent is read.
    control.close();
    drop(sender);
    let gone = hub_rx.recv::<Envelope>(Instant::now() + Duration::from_secs(5));
    assert_eq!(gone, Err(RecvError::PeerGone(GoneReason::Closed)));
}

#[test]
fn a_client_whose_socket_closes_without_a_word_is_gone_within_the_hang_timeout() {
    let dir = hub_dir("left");
    let listener = Arc::new(HubListener::bind(&dir, "desk").unwrap());
    let hub = admit_one(listener.clone(), cfg());
    let client = attach_to_hub(&dir, "desk", "quiet", &cfg()).unwrap();
    let (_, hub_end) = hub.join().unwrap().unwrap();
    // The client's heartbeat stops and its socket closes as if its process died: its
    // liveness thread is stopped without marking the segment closed.
    let started = Instant::now();
    client.control.link_for_tests().drop_socket_for_tests();
    let mut rx = hub_end.receiver;
    let gone = rx.recv::<Envelope>(Instant::now() + Duration::from_secs(5));
    assert_eq!(gone, Err(RecvError::PeerGone(GoneReason::Left)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn two_hubs_cannot_take_one_name_and_a_dead_hubs_socket_is_taken_over() {
    let dir = hub_dir("names");
    let first = HubListener::bind(&dir, "desk").unwrap();
    let second = HubListener::bind(&dir, "desk").unwrap_err();
    assert_eq!(
        second.to_string(),
        format!(
            "a hub named desk is already running (pid {})",
            std::process::id()
        )
    );
    assert!(matches!(
        HubListener::bind(&dir, "../x").unwrap_err(),
        HubError::Name(_)
    ));
    drop(first);
    assert!(!socket_path(&dir, "desk").exists());
    // A socket file left behind (a hub killed) does not keep the name.
    std::os::unix::net::UnixListener::bind(socket_path(&dir, "desk")).unwrap();
    let again = HubListener::bind(&dir, "desk").unwrap();
    let hub = admit_one(Arc::new(again), cfg());
    attach_to_hub(&dir, "desk", "c", &cfg()).unwrap();
    hub.join().unwrap().unwrap();
}

#[test]
fn no_hub_and_a_directory_others_may_enter_are_clear_errors() {
    let dir = hub_dir("none");
    let e = attach_to_hub(&dir, "desk", "c", &cfg()).unwrap_err();
    assert!(matches!(e, StartError::NoHub { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("no hub named desk to attach to ("),
        "{e}"
    );
    assert!(e
        .to_string()
        .ends_with("start one with `runner hub --name desk`"));
    ensure_private_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = HubListener::bind(&dir, "desk").unwrap_err();
    assert!(
        e.to_string()
            .ends_with("must be a directory of this user's with mode 0700"),
        "{e}"
    );
}

#[test]
fn a_client_of_another_protocol_is_refused_with_both_versions_named() {
    let dir = hub_dir("version");
    let listener = Arc::new(HubListener::bind(&dir, "desk").unwrap());
    let hub = admit_one(listener.clone(), cfg());
    let old = ChannelConfig {
        protocol_version: 3,
        ..cfg()
    };
    let e = attach_to_hub(&dir, "desk", "old", &old).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "hub desk refused: the hub speaks protocol version {}, the client 3: use the \
             same release",
            crate::protocol::PROTOCOL_VERSION
        )
    );
    let hub_side = hub.join().unwrap().unwrap_err();
    assert!(hub_side.contains("protocol version 3"), "{hub_side}");
}

#[test]
fn a_knock_that_is_not_an_attach_request_is_refused_and_one_that_says_nothing_times_out() {
    let dir = hub_dir("garbage");
    let listener = HubListener::bind(&dir, "desk").unwrap();
    let path = socket_path(&dir, "desk");

    let mut rogue = sys::socket::connect(&path).unwrap();
    rogue.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut knock = listener.accept(Duration::from_secs(5)).unwrap().unwrap();
    let e = knock.request(Duration::from_secs(5)).unwrap_err();
    assert!(matches!(e, KnockError::Malformed(_)), "{e}");
    let answer = read_line(&mut rogue, Instant::now() + Duration::from_secs(5)).unwrap();
    assert_eq!(answer, "refused not an attach request");

    let _silent = sys::socket::connect(&path).unwrap();
    let mut knock = listener.accept(Duration::from_secs(5)).unwrap().unwrap();
    let started = Instant::now();
    let e = knock.request(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(e, KnockError::Io(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Nobody else knocking: accept gives up at its deadline.
    assert!(listener
        .accept(Duration::from_millis(50))
        .unwrap()
        .is_none());
}

/// Memory that is not sealed (a plain file here) is refused: a client could shrink it under
/// the hub and kill it with SIGBUS.
#[cfg(target_os = "linux")]
#[test]
fn memory_that_is_not_sealed_is_refused() {
    use std::os::fd::AsFd;
    let dir = hub_dir("unsealed");
    let listener = HubListener::bind(&dir, "desk").unwrap();
    let rogue = sys::socket::connect(&socket_path(&dir, "desk")).unwrap();
    let file_path = dir.join("plain");
    let file = std::fs::File::create(&file_path).unwrap();
    file.set_len(1 << 20).unwrap();
    let message = format!(
        "{ATTACH_MAGIC}\nprotocol={}\nclient=rogue\npid=1\nsegment=fd\n",
        crate::protocol::PROTOCOL_VERSION
    );
    sys::socket::send_with_fd(&rogue, message.as_bytes(), Some(file.as_fd())).unwrap();
    let mut knock = listener.accept(Duration::from_secs(5)).unwrap().unwrap();
    let request = knock.request(Duration::from_secs(5)).unwrap();
    assert_eq!(
        request.pid,
        std::process::id(),
        "the kernel's pid, not the message's"
    );
    let e = knock.admit(request, &cfg()).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("not a memfd sealed against resizing"),
        "{e}"
    );
    let mut rogue = rogue;
    let answer = read_line(&mut rogue, Instant::now() + Duration::from_secs(5)).unwrap();
    assert!(
        answer.starts_with("refused its shared memory cannot be used"),
        "{answer}"
    );
}

#[test]
fn a_client_that_writes_on_its_socket_after_attaching_is_cut_off() {
    let dir = hub_dir("junk");
    let listener = Arc::new(HubListener::bind(&dir, "desk").unwrap());
    let hub = admit_one(listener.clone(), cfg());
    let client = attach_to_hub(&dir, "desk", "noisy", &cfg()).unwrap();
    let (_, hub_end) = hub.join().unwrap().unwrap();
    client.control.link_for_tests().write_socket_for_tests();
    let mut rx = hub_end.receiver;
    let gone = rx.recv::<Envelope>(Instant::now() + Duration::from_secs(5));
    assert_eq!(gone, Err(RecvError::PeerGone(GoneReason::Left)));
}
