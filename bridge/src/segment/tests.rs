//! Tests of the segment: privacy and geometry of a created segment, refusal of a bad header,
//! the take-once rule, and the bookkeeping of names on both platforms (the sweep, the lock
//! files).

use std::io;
use std::path::Path;
#[cfg(target_os = "linux")]
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use shared_memory::ShmemConf;

use super::*;
use crate::sync::Ordering;
use crate::sys::shm::{try_lock_exclusive, Bookkeeping, Registry};

fn small() -> Geometry {
    Geometry {
        ring_capacity: 4096,
        max_frame: 1024,
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_created_segment_is_private_and_opens_with_its_geometry() {
    use std::os::unix::fs::PermissionsExt;
    let seg = Segment::create(small(), 7).unwrap();
    let meta = std::fs::metadata(seg.path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(seg.name().contains(&format!("-{}-", std::process::id())));
    let other = Segment::open(seg.name()).unwrap();
    assert_eq!(other.geometry(), small());
    assert_eq!(other.protocol_version(), 7);
    seg.unlink().unwrap();
    assert!(!seg.path().exists());
    assert!(matches!(
        Segment::open(seg.name()),
        Err(SegmentError::Open { .. })
    ));
    // Both mappings still work after the unlink.
    let (mut tx, _) = seg.endpoints(Role::Runner).unwrap();
    let (_, mut rx) = other.endpoints(Role::Worker).unwrap();
    tx.try_push(b"still here").unwrap();
    let mut out = Vec::new();
    assert!(rx.pop_into(&mut out).unwrap());
    assert_eq!(out, b"still here");
}

#[test]
fn names_are_unguessable() {
    let a = Segment::create(Geometry::default(), 1).unwrap();
    let b = Segment::create(Geometry::default(), 1).unwrap();
    assert_ne!(a.name(), b.name());
    let rand = a.name().rsplit('-').next().unwrap();
    assert!(rand.len() >= 12, "{}", a.name());
    assert!(a.name().len() <= 31, "{}", a.name());
}

#[test]
fn dropping_the_creator_removes_the_name() {
    let seg = Segment::create(Geometry::default(), 1).unwrap();
    let name = seg.name().trim_start_matches('/').to_string();
    assert!(recorded_names().contains(&name));
    drop(seg);
    assert!(!recorded_names().contains(&name));
    assert!(matches!(
        Segment::open(&format!("/{name}")),
        Err(SegmentError::Open { .. })
    ));
}

#[test]
fn a_bad_magic_or_layout_is_refused() {
    let seg = Segment::create(Geometry::default(), 1).unwrap();
    seg.header().magic.store(0x1234, Ordering::Release);
    assert!(matches!(
        Segment::open(seg.name()),
        Err(SegmentError::Magic(0x1234))
    ));
    seg.header().magic.store(MAGIC, Ordering::Release);
    seg.header().layout_version.store(99, Ordering::Relaxed);
    assert!(matches!(
        Segment::open(seg.name()),
        Err(SegmentError::LayoutVersion {
            ours: LAYOUT_VERSION,
            theirs: 99
        })
    ));
    seg.header()
        .layout_version
        .store(LAYOUT_VERSION, Ordering::Relaxed);
    seg.header().ring_capacity.store(1000, Ordering::Relaxed);
    assert!(matches!(
        Segment::open(seg.name()),
        Err(SegmentError::BadGeometry(_))
    ));
    seg.header().ring_capacity.store(1 << 30, Ordering::Relaxed);
    seg.header().max_frame.store(1024, Ordering::Relaxed);
    assert!(matches!(
        Segment::open(seg.name()),
        Err(SegmentError::Size { .. })
    ));
}

#[test]
fn an_invalid_geometry_is_refused_at_create() {
    let g = Geometry {
        ring_capacity: 1000,
        max_frame: 10,
    };
    assert!(matches!(
        Segment::create(g, 1),
        Err(SegmentError::Geometry(_))
    ));
}

/// Two producers of one ring would race on its data area: safe code must not get them,
/// neither from the same `Segment` nor from a second mapping of the same name.
#[test]
fn two_producers_of_one_ring_cannot_be_made_from_safe_code() {
    let seg = Segment::create(small(), 1).unwrap();
    let runner = seg.endpoints(Role::Runner).unwrap();
    assert!(matches!(
        seg.endpoints(Role::Runner),
        Err(SegmentError::EndpointsTaken(Role::Runner))
    ));
    let again = Segment::open(seg.name()).unwrap();
    assert!(matches!(
        again.endpoints(Role::Runner),
        Err(SegmentError::EndpointsTaken(Role::Runner))
    ));
    // The other side's ends are still there, once.
    let worker = again.endpoints(Role::Worker).unwrap();
    assert!(matches!(
        seg.endpoints(Role::Worker),
        Err(SegmentError::EndpointsTaken(Role::Worker))
    ));
    // Other names of the same object: without its leading slash, with two, a hard link.
    #[cfg(target_os = "linux")]
    {
        let bare = seg.name().trim_start_matches('/').to_string();
        let link = PathBuf::from(SHM_DIR).join(format!("{bare}-link"));
        std::fs::hard_link(seg.path(), &link).unwrap();
        for alias in [bare.clone(), format!("//{bare}"), format!("/{bare}-link")] {
            let other = Segment::open(&alias).unwrap();
            assert!(
                matches!(
                    other.endpoints(Role::Runner),
                    Err(SegmentError::EndpointsTaken(Role::Runner))
                ),
                "{alias}"
            );
        }
        std::fs::remove_file(&link).unwrap();
    }
    // Once every end and mapping is gone, the claims are released with them.
    let name = seg.name().to_string();
    drop((runner, worker, again));
    let reopened = Segment::open(&name).unwrap();
    drop(seg);
    assert!(reopened.endpoints(Role::Runner).is_ok());
    assert!(reopened.endpoints(Role::Worker).is_ok());
}

#[cfg(target_os = "linux")]
fn candidate(pid: u32, tag: u128) -> PathBuf {
    PathBuf::from(format!("{SHM_DIR}/{NAME_PREFIX}{pid}-{tag:032x}"))
}

fn age(path: &Path, by: Duration) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

/// Containers sharing one `/dev/shm` see each other's names, whose pids mean nothing in
/// this PID namespace. A name whose creator still holds its lock is alive, whatever its
/// pid says here; an unlocked one is stale, whatever its pid says here.
#[cfg(target_os = "linux")]
#[test]
fn the_sweep_trusts_the_creators_lock_not_the_pid_in_the_name() {
    let me = std::process::id();
    // A pid that cannot exist here (above the kernel's limit of 2^22), held locked by a
    // "creator in another namespace" (this test, through its own open file).
    let locked = candidate(4_194_999, me as u128);
    // A pid alive here (ours), but nobody holds the lock.
    let unlocked = candidate(me, 0xdead_0000 + me as u128);
    for p in [&locked, &unlocked] {
        std::fs::write(p, b"").unwrap();
        age(p, Duration::from_secs(60));
    }
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&locked)
        .unwrap();
    assert!(try_lock_exclusive(&holder).unwrap());

    sweep_stale();
    assert!(locked.exists(), "a locked segment was swept");
    assert!(!unlocked.exists(), "an unlocked stale segment was kept");

    drop(holder);
    sweep_stale();
    assert!(!locked.exists(), "the lock was released but the name kept");
}

#[cfg(target_os = "linux")]
#[test]
fn a_young_name_is_not_swept_before_its_creator_could_lock_it() {
    let young = candidate(4_194_998, 0xbeef_0000 + std::process::id() as u128);
    std::fs::write(&young, b"").unwrap();
    sweep_stale();
    assert!(young.exists());
    age(&young, SWEEP_GRACE + Duration::from_secs(1));
    sweep_stale();
    assert!(!young.exists());
}

#[cfg(target_os = "linux")]
#[test]
fn a_live_creator_holds_its_lock_until_the_name_is_gone() {
    let seg = Segment::create(small(), 1).unwrap();
    age(&seg.path(), Duration::from_secs(60));
    sweep_stale();
    assert!(seg.path().exists());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg.path())
        .unwrap();
    assert!(!try_lock_exclusive(&f).unwrap());
}

/// A registry of lock files in a directory of its own, removed when dropped.
struct TestRegistry {
    dir: std::path::PathBuf,
    books: Bookkeeping,
}

impl TestRegistry {
    fn new(tag: &str) -> TestRegistry {
        let dir = std::env::temp_dir().join(format!("ibbridge-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TestRegistry {
            books: Bookkeeping::Registry(Registry::at(dir.clone())),
            dir,
        }
    }

    fn lock_file(&self, name: &str) -> std::path::PathBuf {
        self.dir
            .join(format!("{}.lock", name.trim_start_matches('/')))
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// macOS's bookkeeping, run here: a segment's name is recorded by a locked lock file made
/// before the object, and both go when the name is unlinked.
#[test]
fn a_registry_records_a_segment_until_it_is_unlinked() {
    let reg = TestRegistry::new("records");
    let seg = Segment::create_with(reg.books.clone(), small(), 3).unwrap();
    let bare = seg.name().trim_start_matches('/').to_string();
    assert_eq!(reg.books.names(), vec![bare.clone()]);
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(reg.lock_file(seg.name()))
        .unwrap();
    assert!(!try_lock_exclusive(&lock).unwrap(), "the creator holds it");
    // A live creator's name is not swept, however old its record.
    age(&reg.lock_file(seg.name()), Duration::from_secs(60));
    assert_eq!(reg.books.sweep_stale(), 0);
    let other = Segment::open(seg.name()).unwrap();
    assert_eq!(other.protocol_version(), 3);
    seg.unlink().unwrap();
    assert_eq!(reg.books.names(), Vec::<String>::new());
    assert!(matches!(
        Segment::open(seg.name()),
        Err(SegmentError::Open { .. })
    ));
    // The directory is private to its user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&reg.dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// A creator that died leaves an unlocked lock file, with or without its object: the
/// sweep unlinks the object and removes the record, once the record is old enough.
#[test]
fn a_registry_sweep_removes_what_a_dead_creator_left() {
    let reg = TestRegistry::new("sweep");
    // Died after making its object.
    let name = crate::sys::shm::new_name(std::process::id()).unwrap();
    let claim = reg.books.claim(&name).unwrap();
    let mut shmem = ShmemConf::new().size(4096).os_id(&name).create().unwrap();
    shmem.set_owner(false);
    drop(shmem);
    drop(claim);
    // Died between its lock file and its object.
    let early = crate::sys::shm::new_name(std::process::id()).unwrap();
    drop(reg.books.claim(&early).unwrap());
    assert!(ShmemConf::new().os_id(&name).open().is_ok());

    // Young records are left alone: their creators may be about to lock them.
    assert_eq!(reg.books.sweep_stale(), 0);
    assert_eq!(reg.books.names().len(), 2);
    for n in [&name, &early] {
        age(&reg.lock_file(n), SWEEP_GRACE + Duration::from_secs(1));
    }
    assert_eq!(reg.books.sweep_stale(), 2);
    assert_eq!(reg.books.names(), Vec::<String>::new());
    assert!(ShmemConf::new().os_id(&name).open().is_err(), "object left");
}

/// The worker learns its segment's name from its environment: a name that is not one of
/// ours (`../` and the like) can make the registry remove nothing outside its directory.
#[test]
fn a_registry_refuses_names_that_are_not_segment_names() {
    let reg = TestRegistry::new("hostile");
    std::fs::create_dir_all(&reg.dir).unwrap();
    let outside = reg.dir.with_extension("victim.lock");
    std::fs::write(&outside, b"").unwrap();
    let hostile = format!("/../{}", outside.file_stem().unwrap().to_str().unwrap());
    let err = reg.books.unlink(&hostile).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(outside.exists(), "a file outside the registry was removed");
    assert!(reg.books.claim(&hostile).is_err());
    std::fs::remove_file(&outside).unwrap();
}

/// A registry directory someone else could write to is refused, with the directory named.
#[test]
fn a_registry_directory_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let reg = TestRegistry::new("open");
    std::fs::create_dir(&reg.dir).unwrap();
    std::fs::set_permissions(&reg.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    match Segment::create_with(reg.books.clone(), small(), 1) {
        Err(e @ SegmentError::Registry { .. }) => {
            let e = e.to_string();
            assert!(e.contains(&reg.dir.display().to_string()), "{e}");
            assert!(e.contains("0700"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_dir(&reg.dir).unwrap().count(), 0);
}
