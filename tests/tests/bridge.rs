//! Cross-process tests of the bridge: real worker processes (`bridge-peer`) over real segments.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bridge::channel::{self, Channel, GoneReason, RecvError, SendError, StartError};
use bridge::protocol::{Reply, Request};
use bridge::{Client, ClientConfig, RequestError};
use tests::{alive, kill_and_wait, recorded, segments_of, signal, within, ProcessSignal, XorShift};

const PEER: &str = env!("CARGO_BIN_EXE_bridge-peer");

fn peer(args: &[&str]) -> Command {
    let mut cmd = Command::new(PEER);
    cmd.args(args);
    cmd
}

fn client(args: &[&str]) -> Client {
    let cfg = ClientConfig {
        channel: tests::config(),
        ..ClientConfig::default()
    };
    Client::spawn(peer(args), &cfg).expect("worker starts").0
}

fn ping(payload: &[u8]) -> Request {
    Request::Ping {
        payload: payload.to_vec(),
    }
}

/// A worker declared hung after 1 s of silence.
fn quickly_hung(cmd: Command) -> Client {
    let cfg = ClientConfig {
        channel: channel::ChannelConfig {
            hang_timeout: Duration::from_millis(1000),
            ..tests::config()
        },
        ..ClientConfig::default()
    };
    Client::spawn(cmd, &cfg).unwrap().0
}

/// The next request to `client` fails because the worker is gone for the reason `expected`
/// accepts, and the worker process is gone within 5 s (killed, not left behind).
fn next_request_finds_the_worker_gone(client: &Client, expected: fn(&GoneReason) -> bool) {
    let pid = client.control().peer_pid();
    let err = client
        .request(ping(b"x"), Duration::from_secs(30))
        .unwrap_err();
    assert!(
        matches!(&err, RequestError::PeerGone(reason) if expected(reason)),
        "{err:?}"
    );
    assert!(within(Duration::from_secs(5), || !alive(pid)).is_some());
}

/// A directory of this test process's own under the build's tmp dir.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn a_million_frames_each_way_arrive_in_order_without_loss() {
    const COUNT: u64 = 1_000_000;
    let cfg = tests::config();
    let Channel {
        mut sender,
        mut receiver,
        control,
    } = channel::spawn(peer(&["stream", &COUNT.to_string(), "7"]), &cfg).unwrap();
    let far = || Instant::now() + Duration::from_secs(120);
    let writer = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for seq in 0..COUNT {
            tests::frame(7, seq, &mut buf);
            sender.send_bytes(&buf, Some(far())).unwrap();
        }
        sender
    });
    let mut expected = Vec::new();
    let mut large = 0u64;
    for seq in 0..COUNT {
        tests::frame(8, seq, &mut expected);
        let got = receiver.recv_bytes(far()).unwrap();
        assert!(got == expected.as_slice(), "frame {seq} differs");
        large += u64::from(got.len() >= 1024);
    }
    let _sender = writer.join().unwrap();
    let verdict = receiver.recv_bytes(far()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(verdict),
        format!("verified {COUNT}")
    );
    assert!(large > 5_000, "{large} large frames");
    let stats = control.stats();
    assert_eq!(stats.sent.frames, COUNT + 1, "hello + frames");
    assert_eq!(stats.received.frames, COUNT + 2, "hello + frames + verdict");
    assert_eq!(receiver.try_recv_bytes().unwrap(), None);
}

#[test]
fn eight_threads_get_their_own_replies() {
    const PER_THREAD: usize = 2_000;
    let client = Arc::new(client(&["serve"]));
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let payload = format!("{t}:{i}").into_bytes();
                    let reply = client
                        .request(ping(&payload), Duration::from_secs(30))
                        .unwrap();
                    assert_eq!(reply, Reply::Pong { payload });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(client.in_flight(), 0);
    assert_eq!(client.stats().stray_replies, 0);
}

#[test]
fn many_requests_in_flight_at_once_are_matched_by_id() {
    let client = client(&["serve"]);
    let streams: Vec<_> = (0..500u32)
        .map(|i| {
            let payload = i.to_le_bytes().to_vec();
            (
                payload.clone(),
                client
                    .stream(ping(&payload), Duration::from_secs(30))
                    .unwrap(),
            )
        })
        .collect();
    assert!(client.in_flight() > 0);
    for (payload, stream) in streams {
        let replies: Vec<_> = stream.map(Result::unwrap).collect();
        assert_eq!(replies, vec![Reply::Pong { payload }]);
    }
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn async_requests_complete_without_blocking() {
    let client = client(&["serve"]);
    let futures: Vec<_> = (0..100u32)
        .map(|i| client.request_async(ping(&i.to_le_bytes()), Duration::from_secs(30)))
        .collect();
    for (i, fut) in futures.into_iter().enumerate() {
        assert_eq!(
            block_on(fut).unwrap(),
            Reply::Pong {
                payload: (i as u32).to_le_bytes().to_vec()
            }
        );
    }
    let silent = client.request_async(ping(b"silent"), Duration::from_millis(100));
    assert_eq!(block_on(silent), Err(RequestError::Timeout));
}

#[test]
fn a_stray_reply_is_dropped_and_counted() {
    let client = client(&["serve"]);
    let reply = client
        .request(ping(b"stray"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        reply,
        Reply::Pong {
            payload: b"stray".to_vec()
        }
    );
    // The stray reply was sent before the real one, so it has been routed already.
    assert_eq!(client.stats().stray_replies, 1);
}

#[test]
fn a_request_without_reply_times_out_and_its_late_reply_would_be_stray() {
    let client = client(&["serve"]);
    let start = Instant::now();
    let err = client
        .request(ping(b"silent"), Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(err, RequestError::Timeout);
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(client.in_flight(), 0);
    // The connection is still fine.
    assert_eq!(
        client
            .request(ping(b"ok"), Duration::from_secs(10))
            .unwrap(),
        Reply::Pong {
            payload: b"ok".to_vec()
        }
    );
}

#[test]
fn a_consumer_that_stops_reading_makes_the_producer_fail_by_its_deadline() {
    let cfg = tests::config();
    let Channel {
        mut sender,
        control,
        ..
    } = channel::spawn(peer(&["deaf"]), &cfg).unwrap();
    let frame = vec![7u8; 1000];
    let mut sent = 0;
    loop {
        match sender.send_bytes(&frame, None) {
            Ok(()) => sent += 1,
            Err(SendError::Full) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // 1 MiB ring, 1008-byte frames, minus the hello.
    assert_eq!(sent, (1 << 20) / 1008);
    let start = Instant::now();
    let err = sender
        .send_bytes(&frame, Some(Instant::now() + Duration::from_millis(300)))
        .unwrap_err();
    let waited = start.elapsed();
    assert_eq!(err, SendError::Timeout);
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(control.stats().sent.full_events >= 1);
    assert!(control.gone().is_none());
}

#[test]
fn sigkill_of_the_worker_mid_stream_is_reported_as_peer_death() {
    let cfg = tests::config();
    let Channel {
        mut receiver,
        control,
        ..
    } = channel::spawn(peer(&["flood"]), &cfg).unwrap();
    let name = control.segment_name().to_string();
    for seq in 0..10_000u64 {
        let got = receiver
            .recv_bytes(Instant::now() + Duration::from_secs(10))
            .unwrap();
        assert_eq!(got, seq.to_le_bytes());
    }
    signal(control.peer_pid(), ProcessSignal::Kill).unwrap();
    let killed = Instant::now();
    // Everything it sent before dying is still delivered, in order; then peer death.
    let mut seq = 10_000u64;
    let err = loop {
        match receiver.recv_bytes(Instant::now() + Duration::from_secs(10)) {
            Ok(got) => {
                assert_eq!(got, seq.to_le_bytes());
                seq += 1;
            }
            Err(e) => break e,
        }
    };
    let detected = killed.elapsed();
    assert_eq!(err, RecvError::PeerGone(GoneReason::Exited(killed_by(9))));
    assert_eq!(
        err.to_string(),
        "peer gone: worker process was killed by signal 9"
    );
    assert!(detected < Duration::from_secs(2), "{detected:?}");
    assert!(!recorded(&name));
}

/// The status of a process killed by `signal`.
fn killed_by(signal: i32) -> std::process::ExitStatus {
    std::os::unix::process::ExitStatusExt::from_raw(signal)
}

#[test]
fn requests_in_flight_fail_when_the_worker_is_killed() {
    let client = client(&["serve"]);
    let name = client.control().segment_name().to_string();
    let pid = client.control().peer_pid();
    let waiter = {
        let stream = client
            .stream(ping(b"silent"), Duration::from_secs(30))
            .unwrap();
        std::thread::spawn(move || {
            let start = Instant::now();
            let r: Vec<_> = stream.collect();
            (r, start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    signal(pid, ProcessSignal::Kill).unwrap();
    let (replies, waited) = waiter.join().unwrap();
    assert_eq!(
        replies,
        vec![Err(RequestError::PeerGone(GoneReason::Exited(killed_by(
            9
        ))))]
    );
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    // New requests fail at once with the same reason.
    assert!(matches!(
        client.request(ping(b"x"), Duration::from_secs(5)),
        Err(RequestError::PeerGone(GoneReason::Exited(_)))
    ));
    assert!(!recorded(&name));
}

#[test]
fn a_stopped_worker_is_declared_hung_and_killed() {
    let client = quickly_hung(peer(&["serve"]));
    signal(client.control().peer_pid(), ProcessSignal::Stop).unwrap();
    // It was killed, not left stopped.
    next_request_finds_the_worker_gone(&client, |r| matches!(r, GoneReason::Hung(_)));
}

#[test]
fn sigkill_of_the_runner_is_seen_by_the_worker() {
    let dir = temp_dir("bridge-test");
    let record = dir.join("runner-kill");
    let _ = std::fs::remove_file(&record);
    let mut runner = peer(&["parent", record.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(runner.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"worker"), "{line}");
    let worker_pid: u32 = words[1].parse().unwrap();
    let segment = words[3].to_string();
    assert!(!recorded(&segment), "unlinked once attached");
    let killed = kill_and_wait(&mut runner).unwrap();
    let seen = within(Duration::from_secs(10), || record.exists());
    let took = killed.elapsed();
    assert!(seen.is_some(), "the worker never noticed");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.starts_with("gone: RunnerDied"), "{text}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        within(Duration::from_secs(5), || !alive(worker_pid)).is_some(),
        "the worker exits by itself"
    );
    assert!(!recorded(&segment));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_normal_close_lets_the_worker_exit_and_leaves_no_segment() {
    let mut client = client(&["serve"]);
    let name = client.control().segment_name().to_string();
    let pid = client.control().peer_pid();
    assert!(!recorded(&name), "unlinked as soon as attached");
    assert_eq!(
        client
            .request(Request::Shutdown, Duration::from_secs(5))
            .unwrap(),
        Reply::ShuttingDown
    );
    client.close();
    assert!(!alive(pid));
    assert!(!recorded(&name));
}

#[test]
fn a_protocol_version_mismatch_is_refused() {
    let mut cmd = peer(&["serve"]);
    cmd.env("BRIDGE_PEER_PROTOCOL", "999");
    let err = channel::spawn(cmd, &tests::config()).unwrap_err();
    match err {
        StartError::ProtocolMismatch { ours, theirs } => {
            assert_eq!((ours, theirs), (bridge::protocol::PROTOCOL_VERSION, 999));
        }
        other => panic!("expected a protocol mismatch, got {other}"),
    }
    assert!(err_text_names_versions());
}

fn err_text_names_versions() -> bool {
    let text = StartError::ProtocolMismatch {
        ours: 1,
        theirs: 999,
    }
    .to_string();
    text.contains("999") && text.contains('1') && text.contains("refused")
}

#[test]
fn a_build_mismatch_is_refused() {
    let mut cmd = peer(&["serve"]);
    cmd.env("BRIDGE_PEER_BUILD", "some-other-build");
    match channel::spawn(cmd, &tests::config()).unwrap_err() {
        StartError::BuildMismatch { ours, theirs } => {
            assert_eq!(ours, "bridge-tests");
            assert_eq!(theirs, "some-other-build");
        }
        other => panic!("expected a build mismatch, got {other}"),
    }
}

#[test]
fn a_worker_that_dies_during_start_is_reported_with_its_output() {
    match channel::spawn(peer(&["fail"]), &tests::config()).unwrap_err() {
        StartError::Exited { status, output } => {
            assert_eq!(status.code(), Some(3));
            assert_eq!(output, vec!["peer: failing on purpose".to_string()]);
        }
        other => panic!("expected an exit during start, got {other}"),
    }
}

#[test]
fn an_executable_that_is_no_worker_fails_to_start_cleanly() {
    let err = channel::spawn(Command::new("/nonexistent/worker"), &tests::config()).unwrap_err();
    assert!(matches!(err, StartError::Spawn(_)), "{err}");
}

#[test]
fn an_undecodable_frame_tears_the_connection_down() {
    let client = client(&["garbage"]);
    next_request_finds_the_worker_gone(&client, |r| matches!(r, GoneReason::Corrupt(_)));
}

#[test]
fn attach_outside_a_runner_is_a_clear_error() {
    // This test process was not started by a runner.
    let err = channel::attach(&tests::config()).unwrap_err();
    assert!(matches!(err, StartError::NotStartedByRunner));
    assert!(err.to_string().contains("IBBRIDGE_SEGMENT"));
}

#[test]
fn two_hundred_kills_of_either_side_leave_no_segment() {
    use std::io::Read;
    let dir = temp_dir("bridge-hygiene");
    let mut rng = XorShift::new(0x1234_5678_9ABC_DEF0);
    let mut pids = Vec::new();
    for cycle in 0..200 {
        let mut runner = peer(&["parent", dir.join("record").to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        pids.push(runner.id());
        if cycle % 2 == 0 {
            // Kill the runner at a random moment: before, during or after the worker's start.
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        } else {
            // Kill the worker once it is up; the runner then fails and exits on its own.
            let mut out = runner.stdout.take().unwrap();
            let mut text = String::new();
            let mut byte = [0u8; 1];
            while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
                text.push(byte[0] as char);
            }
            if let Some(pid) = text
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
            {
                signal(pid, ProcessSignal::Kill).unwrap();
            }
            let until = Instant::now() + Duration::from_secs(10);
            while runner.try_wait().unwrap().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        kill_and_wait(&mut runner).unwrap();
    }
    // Give orphaned workers their liveness period to notice and exit, and the names left
    // behind the sweep's grace (a name younger than that may not be locked yet).
    std::thread::sleep(bridge::segment::SWEEP_GRACE + Duration::from_millis(200));
    let leftover = |pids: &[u32]| -> Vec<String> {
        pids.iter().flat_map(|&p| segments_of(p).unwrap()).collect()
    };
    // A runner killed between creating its segment and starting its worker cannot unlink
    // it; the next start sweeps such names (nobody holds their lock), as a runner does.
    let before_sweep = leftover(&pids).len();
    bridge::segment::sweep_stale();
    assert_eq!(leftover(&pids), Vec::<String>::new());
    assert!(
        before_sweep <= 10,
        "{before_sweep} segments leaked before the sweep"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `script` as `sh -c` in a private mount namespace with a tmpfs of `size` on /dev/shm
/// (`unshare -m`, or `unshare -rm` where only user namespaces are allowed): a machine whose
/// /dev/shm is short, as Docker's default 64 MiB is for large rings.
#[cfg(target_os = "linux")]
fn with_short_dev_shm(size: &str, script: &str) -> std::process::Output {
    let full = format!("mount -t tmpfs -o size={size} tmpfs /dev/shm && {script}");
    for flags in ["-m", "-rm"] {
        let out = Command::new("unshare")
            .args([flags, "sh", "-c", &full])
            .output()
            .expect("unshare runs");
        if out.status.success() || !String::from_utf8_lossy(&out.stderr).contains("unshare") {
            return out;
        }
    }
    panic!("this test needs `unshare -m` or `unshare -rm` (util-linux) to make a short /dev/shm");
}

/// tmpfs reserves nothing at `ftruncate`: without a reservation, the first write to a page
/// of a named segment that does not fit kills the runner with SIGBUS and leaves the segment
/// behind. A connection's segment does not live in /dev/shm on Linux at all (a sealed memfd):
/// a short /dev/shm does not stop a worker from starting.
#[cfg(target_os = "linux")] // reads /proc or mounts a tmpfs on /dev/shm
#[test]
fn a_short_dev_shm_is_a_clear_error_not_a_sigbus() {
    // 8 MiB rings need 16 MiB; the tmpfs has 4.
    let out = with_short_dev_shm("4m", &format!("{PEER} create-named 8388608"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?} {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let error = stdout
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error reported: {stdout}"));
    for part in [
        "not enough shared memory",
        "16.0 MiB",
        "4.0 MiB free",
        "ring_capacity",
        "--shm-size",
    ] {
        assert!(error.contains(part), "{part:?} missing from {error}");
    }
    assert!(
        stdout.contains("left 0"),
        "a segment was left behind: {stdout}"
    );
    // The same rings fit a larger /dev/shm.
    let out = with_short_dev_shm("64m", &format!("{PEER} create-named 8388608"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("created") && stdout.contains("left 0"),
        "{stdout}"
    );
    // A worker starts over the same rings beside the short /dev/shm, and nothing is put there.
    let out = with_short_dev_shm("4m", &format!("{PEER} start 8388608"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("started") && stdout.contains("left 0"),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The descriptors of `pid` that are the bridge segment `name` (a sealed memfd), as paths under
/// `/proc/<pid>/fd` another process of the same user can open.
#[cfg(target_os = "linux")]
fn segment_descriptors(pid: u32, name: &str) -> Vec<std::path::PathBuf> {
    let target = format!("/memfd:{}", name.trim_start_matches('/'));
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with(&format!("{target} ")))
        })
        .map(|e| e.path())
        .collect()
}

/// A peer that truncates the segment (`ftruncate` on its own descriptor, or on one it opened
/// through `/proc`) would kill the other side with SIGBUS on its next access: on Linux the
/// kernel refuses it, on the runner's descriptor and on the worker's, and both sides go on.
#[cfg(target_os = "linux")]
#[test]
fn nobody_can_truncate_the_segment_of_a_live_connection() {
    let client = client(&["serve"]);
    client
        .request(ping(b"before"), Duration::from_secs(5))
        .unwrap();
    let name = client.control().segment_name().to_string();
    for pid in [std::process::id(), client.control().peer_pid()] {
        let fds = segment_descriptors(pid, &name);
        assert_eq!(fds.len(), 1, "pid {pid}: {fds:?}");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fds[0])
            .unwrap();
        let size = file.metadata().unwrap().len();
        for len in [0, 4096, size - 1, size + 4096] {
            let err = file.set_len(len).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::PermissionDenied,
                "pid {pid} set_len({len}): {err}"
            );
        }
        assert_eq!(file.metadata().unwrap().len(), size);
    }
    for i in 0..100u32 {
        let payload = i.to_le_bytes();
        assert_eq!(
            client
                .request(ping(&payload), Duration::from_secs(5))
                .unwrap(),
            Reply::Pong {
                payload: payload.to_vec()
            }
        );
    }
    assert!(alive(client.control().peer_pid()));
}

/// A hung worker is killed with its process group: what it started dies with it.
#[test]
fn a_hung_worker_is_killed_with_everything_it_started() {
    let dir = temp_dir("bridge-group");
    let record = dir.join("child");
    let mut cmd = peer(&["serve"]);
    cmd.env("BRIDGE_PEER_CHILD", &record);
    let client = quickly_hung(cmd);
    client.request(ping(b"x"), Duration::from_secs(10)).unwrap();
    let grandchild: u32 = std::fs::read_to_string(&record).unwrap().parse().unwrap();
    assert!(alive(grandchild));
    signal(client.control().peer_pid(), ProcessSignal::Stop).unwrap();
    next_request_finds_the_worker_gone(&client, |r| matches!(r, GoneReason::Hung(_)));
    let gone = within(Duration::from_secs(5), || !alive(grandchild));
    if gone.is_none() {
        let _ = signal(grandchild, ProcessSignal::Kill);
    }
    assert!(
        gone.is_some(),
        "the worker's child {grandchild} outlived it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The doorbell's polling mechanism (macOS before 14.4; `IBBRIDGE_DOORBELL=poll`) carries a
/// whole conversation across processes whose readers sleep between messages, as the native
/// one does; the worker inherits the mechanism from its runner. A wake that went missing would
/// cost each message the longest sleep (250 ms): the median round trip shows it.
#[test]
fn the_polling_doorbell_works_across_processes() {
    // The system's own (polling where it has none).
    let native = bridge::platform::native_doorbell().unwrap_or("poll");
    for (env, mechanism) in [(None, native), (Some("poll"), "poll")] {
        let mut cmd = peer(&["idle-pings", "100"]);
        cmd.env_remove("IBBRIDGE_DOORBELL");
        if let Some(value) = env {
            cmd.env("IBBRIDGE_DOORBELL", value);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (said, median) = stdout.trim().rsplit_once(" median_us ").unwrap();
        assert_eq!(
            said,
            format!("runner {mechanism} worker {mechanism} answered 100")
        );
        let median: u64 = median.parse().unwrap();
        assert!(
            median < 50_000,
            "{mechanism}: median round trip {median} µs"
        );
    }
}
