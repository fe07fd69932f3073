//! The simulated broker's journal file as the broker reads and writes it: opened and locked
//! (the file at its path once the lock is held, read again from the start if it was folded
//! since), new lines applied, entries appended.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};

use bridge::protocol::RemoteError;

use super::super::book::Book;
use super::super::journal::{lock_within, Entry, Locked, LOCK_WAIT};
use super::SimBroker;

/// Most times the journal may be found replaced by a fold while a process waits for it (a
/// fold comes at most every few seconds).
const FOLD_RACES: u32 = 3;

/// Bytes read from the journal's start to find its fold line: its clock line and its fold
/// line are well within them.
const HEAD: usize = 4096;

impl SimBroker {
    /// Opens and locks the journal (exclusively to write, shared to read), and reads what
    /// other writers appended into `book`. The journal is made when the run claims its clock
    /// ([`claim_clock`](super::journal::claim_clock)) and never again here: a worker that
    /// outlives its run (its runner killed) must not make again a journal the next run
    /// removed.
    pub(super) fn open(
        &self,
        book: &mut Book,
        exclusive: bool,
    ) -> Result<Option<Locked>, RemoteError> {
        let Some(path) = self.path() else {
            return Ok(None);
        };
        let (mut locked, id) = self.lock_current(&path, exclusive)?;
        let gen =
            fold_generation(&locked.file).map_err(|e| self.journal_error("cannot read", e))?;
        let other_file = book.file_id.is_some_and(|f| f != id);
        book.file_id = Some(id);
        if book.read_to > 0 && (gen != book.fold.gen || other_file) {
            // Folded by another process since it was read (or another file altogether):
            // read again from the start, each order's telling as it was.
            let told: HashMap<String, _> = book
                .orders
                .drain(..)
                .map(|o| (o.request.order_ref, (o.told, o.told_at)))
                .collect();
            *book = Book {
                file_id: book.file_id,
                taken_here: book.taken_here,
                last_time: book.last_time,
                heard_through: book.heard_through,
                ..Book::default()
            };
            self.read_new(book, &mut locked)?;
            for o in &mut book.orders {
                if let Some(&(t, at)) = told.get(&o.request.order_ref) {
                    (o.told, o.told_at) = (t, at);
                }
            }
            return Ok(Some(locked));
        }
        self.read_new(book, &mut locked)?;
        Ok(Some(locked))
    }

    /// The journal at `path`, opened and locked, and its device and inode: the file at `path`
    /// once the lock is held (a fold renames a new file over it while others wait for the
    /// old one's lock).
    fn lock_current(
        &self,
        path: &std::path::Path,
        exclusive: bool,
    ) -> Result<(Locked, (u64, u64)), RemoteError> {
        use std::os::unix::fs::MetadataExt;
        for _ in 0..FOLD_RACES {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(path)
                .map_err(|e| self.journal_error("cannot open", e))?;
            lock_within(&file, exclusive, LOCK_WAIT)
                .map_err(|e| self.journal_error("cannot lock", e))?;
            let held = file
                .metadata()
                .map_err(|e| self.journal_error("cannot read", e))?;
            let now = std::fs::metadata(path).map_err(|e| self.journal_error("cannot open", e))?;
            if (held.dev(), held.ino()) == (now.dev(), now.ino()) {
                return Ok((Locked { file }, (held.dev(), held.ino())));
            }
        }
        Err(self.journal_error(
            "cannot lock",
            format!("replaced {FOLD_RACES} times while waiting for it"),
        ))
    }

    /// Applies the complete lines appended since `book.read_to`.
    fn read_new(&self, book: &mut Book, j: &mut Locked) -> Result<(), RemoteError> {
        let mut text = Vec::new();
        j.file
            .seek(SeekFrom::Start(book.read_to))
            .and_then(|_| j.file.read_to_end(&mut text))
            .map_err(|e| self.journal_error("cannot read", e))?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut at = 0;
        for line in text[..complete].split(|&b| b == b'\n') {
            if at >= complete {
                break;
            }
            let start = book.read_to + at as u64;
            at += line.len() + 1;
            let entry = std::str::from_utf8(line).ok().and_then(Entry::parse);
            match entry {
                Some(e) => self.apply(book, e),
                None => {
                    return Err(self.journal_error(
                        "malformed line",
                        format!("at byte {start}: {:?}", String::from_utf8_lossy(line)),
                    ))
                }
            }
        }
        book.read_to += complete as u64;
        Ok(())
    }

    /// Appends `entry` (cutting off a line left half-written by a killed writer first) and
    /// applies it.
    pub(super) fn append(
        &self,
        book: &mut Book,
        j: Option<&mut Locked>,
        entry: Entry,
    ) -> Result<(), RemoteError> {
        if let Some(j) = j {
            let len = j
                .file
                .metadata()
                .map_err(|e| self.journal_error("cannot read", e))?
                .len();
            if len > book.read_to {
                tracing::warn!(
                    bytes = len - book.read_to,
                    "simulated broker: cutting off a line left half-written"
                );
                j.file
                    .set_len(book.read_to)
                    .map_err(|e| self.journal_error("cannot truncate", e))?;
            }
            let line = entry.to_line();
            j.file
                .write_all(line.as_bytes())
                .and_then(|_| j.file.sync_data())
                .map_err(|e| self.journal_error("cannot write", e))?;
            book.read_to += line.len() as u64;
        }
        self.apply(book, entry);
        Ok(())
    }
}

/// The fold generation of the journal `file` (0 if it was never folded), from its second line.
fn fold_generation(file: &std::fs::File) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut head = vec![0u8; HEAD];
    let mut len = 0;
    while len < head.len() {
        match file.read_at(&mut head[len..], len as u64)? {
            0 => break,
            n => len += n,
        }
    }
    let second = head[..len]
        .split(|&b| b == b'\n')
        .nth(1)
        .unwrap_or_default();
    let entry = std::str::from_utf8(second).ok().and_then(Entry::parse);
    Ok(match entry {
        Some(Entry::Fold { gen, .. }) => gen,
        _ => 0,
    })
}
