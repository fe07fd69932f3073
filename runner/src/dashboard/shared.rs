//! What the dashboard's threads share ([`Shared`]): the board under its lock, and the
//! channel that tells the browsers each change.
//!
//! Invariants: a change is told while the board is locked ([`Shared::apply`]), so a browser
//! that reads the state and subscribes under the same lock misses nothing and sees nothing
//! twice; telling never waits (a browser that falls behind is told `resync` by its reader).

use parking_lot::Mutex;

use super::board::{Board, Change};
use super::views::{self, Message};

/// The board and the browsers' channel.
pub(crate) struct Shared {
    pub(crate) board: Mutex<Board>,
    pub(crate) events: tokio::sync::broadcast::Sender<Message>,
}

impl Shared {
    /// A board, and a channel that keeps `backlog` messages for a browser that reads slowly.
    pub(crate) fn new(board: Board, backlog: usize) -> Shared {
        let (events, _) = tokio::sync::broadcast::channel(backlog);
        Shared {
            board: Mutex::new(board),
            events,
        }
    }

    /// Changes the board with `change` and tells the browsers what changed.
    pub(crate) fn apply(&self, change: impl FnOnce(&mut Board) -> Vec<Change>) {
        let mut change = Some(change);
        self.apply_each([()], |board, ()| {
            change.take().map(|c| c(board)).unwrap_or_default()
        });
    }

    /// Changes the board with `change` for each of `items` in turn, under one lock, telling
    /// the browsers what each changed before the next.
    pub(crate) fn apply_each<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        mut change: impl FnMut(&mut Board, T) -> Vec<Change>,
    ) {
        let mut board = self.board.lock();
        for item in items {
            let changes = change(&mut board, item);
            if changes.is_empty() {
                continue;
            }
            // Every state a browser can read has a number, and every number was told.
            board.seq += 1;
            for m in views::tell(&board, changes) {
                // No browser listening is no error.
                let _ = self.events.send(m);
            }
        }
    }
}
