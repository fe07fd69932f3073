//! The take-once rule: in one process, each role's ring ends of a shared memory object are
//! handed out at most once, however many times (and under whatever names) the object was
//! mapped.
//!
//! Invariants: a claim is refused while an equal one (same object, same role) is held; a
//! claim is released only when the `Segment` that made it drops, which is after every ring
//! end made from it has dropped (each held an `Arc` of it).

#![forbid(unsafe_code)]

use std::sync::Mutex;

use super::role::Role;
use crate::sys;

/// The (shared memory object, role) pairs whose ring ends this process handed out. A second
/// request for the same pair, from the same `Segment` or from another mapping of the same
/// object (under the same name, an alias of it, or a hard link), is refused: two producers
/// (or consumers) of one ring would race on its data area.
static CLAIMED: Mutex<Vec<(ObjectId, Role)>> = Mutex::new(Vec::new());

/// Identifies a shared memory object: its device and inode where `/proc` tells them (any
/// name of the object, or none, leads to the same), else its name without leading slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ObjectId {
    Inode(String, u64),
    Name(String),
}

impl ObjectId {
    /// The identity of the object mapped at `start`, opened as `name`.
    pub(super) fn of(start: *const u8, name: &str) -> ObjectId {
        match sys::shm::object_identity(start as usize) {
            Some((dev, inode)) => ObjectId::Inode(dev, inode),
            None => ObjectId::Name(name.trim_start_matches('/').to_string()),
        }
    }
}

/// Claims `role`'s ends of object `id` for this process; false if they are already claimed.
pub(super) fn claim(id: &ObjectId, role: Role) -> bool {
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    if claimed.iter().any(|(i, r)| i == id && *r == role) {
        return false;
    }
    claimed.push((id.clone(), role));
    true
}

/// Releases the claims on object `id` of the roles for which `held` is true.
pub(super) fn release(id: &ObjectId, held: impl Fn(Role) -> bool) {
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    claimed.retain(|(i, r)| i != id || !held(*r));
}
