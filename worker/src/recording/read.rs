//! Reading a recording back ([`Recording::open`]): every record checked, the bars gathered per
//! symbol in time order.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bridge::protocol::Bar;

use super::format::{
    codec, crc32, Record, RecordingError, RecordingErrorKind, FORMAT_VERSION, HEADER_LEN, MAGIC,
    MAX_RECORD,
};

/// A live bar as recorded: its symbol, the bar, the strategy's signal and the order it placed.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedLive {
    pub symbol: String,
    pub bar: Bar,
    pub signal: String,
    pub order: Option<String>,
}

/// A recording read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// The file it was read from.
    pub file: PathBuf,
    /// What recorded it (`runner 0.1.0`).
    pub program: String,
    /// The recorded run's configuration, as TOML.
    pub config: String,
    /// The bars' size in seconds.
    pub bar_seconds: u32,
    /// When the recorded run began (Unix seconds).
    pub started: i64,
    /// Every bar of each symbol, history and live, in time order, each time once.
    bars: BTreeMap<String, Vec<Bar>>,
    /// Each symbol's newest history bar.
    history_newest: BTreeMap<String, i64>,
    /// The live bars in the order they were recorded.
    pub live: Vec<RecordedLive>,
}

impl Recording {
    /// Reads and checks the recording at `path`.
    pub fn open(path: &Path) -> Result<Recording, RecordingError> {
        let fail = |offset: u64, kind| RecordingError {
            file: path.to_path_buf(),
            offset,
            kind,
        };
        let bytes =
            std::fs::read(path).map_err(|e| fail(0, RecordingErrorKind::Io(e.to_string())))?;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            let kind = match MAGIC.starts_with(&bytes) {
                // The header itself cut short (an empty file included).
                true => RecordingErrorKind::Truncated,
                false => RecordingErrorKind::NotARecording,
            };
            return Err(fail(0, kind));
        }
        let version = word(&bytes, MAGIC.len()).ok_or(fail(8, RecordingErrorKind::Truncated))?;
        if version != FORMAT_VERSION {
            return Err(fail(8, RecordingErrorKind::Version(version)));
        }
        let mut reader = Reader {
            path,
            symbols: HashMap::new(),
            recording: None,
        };
        let mut at = HEADER_LEN as usize;
        while at < bytes.len() {
            let offset = at as u64;
            let (Some(len), Some(sum)) = (word(&bytes, at), word(&bytes, at + 4)) else {
                return Err(fail(offset, RecordingErrorKind::Truncated));
            };
            if len > MAX_RECORD {
                let what = format!("a record of {len} bytes (at most {MAX_RECORD})");
                return Err(fail(offset, RecordingErrorKind::Corrupt(what)));
            }
            let start = at + 8;
            let Some(payload) = bytes.get(start..start + len as usize) else {
                return Err(fail(offset, RecordingErrorKind::Truncated));
            };
            if crc32(payload) != sum {
                let what = "its checksum does not match".to_string();
                return Err(fail(offset, RecordingErrorKind::Corrupt(what)));
            }
            let record = match bincode::decode_from_slice::<Record, _>(payload, codec()) {
                Ok((record, used)) if used == payload.len() => record,
                Ok((_, used)) => {
                    let what = format!("{} bytes after its record", payload.len() - used);
                    return Err(fail(offset, RecordingErrorKind::Corrupt(what)));
                }
                Err(e) => {
                    let what = format!("undecodable record: {e}");
                    return Err(fail(offset, RecordingErrorKind::Corrupt(what)));
                }
            };
            reader
                .take(record)
                .map_err(|what| fail(offset, RecordingErrorKind::Inconsistent(what)))?;
            at = start + len as usize;
        }
        let mut recording = reader.recording.ok_or(fail(
            HEADER_LEN,
            RecordingErrorKind::Inconsistent("no run recorded".into()),
        ))?;
        for bars in recording.bars.values_mut() {
            bars.sort_by_key(|b| b.time);
            bars.dedup_by_key(|b| b.time);
        }
        Ok(recording)
    }

    /// The recorded symbols, in order.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.bars.keys().map(String::as_str)
    }

    /// Every bar of `symbol` (history and live) in time order, if it was recorded.
    pub fn bars(&self, symbol: &str) -> Option<&[Bar]> {
        self.bars.get(symbol).map(Vec::as_slice)
    }

    /// When a replay's market clock starts: as the recorded run's history ended (the end of the
    /// newest history bar of any symbol), or at its first bar if it had no history.
    pub fn start(&self) -> i64 {
        let size = i64::from(self.bar_seconds);
        self.history_newest
            .values()
            .max()
            .map(|t| t + size)
            .or_else(|| {
                self.bars
                    .values()
                    .filter_map(|b| b.first())
                    .map(|b| b.time)
                    .min()
            })
            .unwrap_or(self.started)
    }

    /// The end of `symbol`'s recorded history (its newest history bar's), if it had one.
    pub fn history_end(&self, symbol: &str) -> Option<i64> {
        let size = i64::from(self.bar_seconds);
        self.history_newest.get(symbol).map(|t| t + size)
    }

    /// The end of the last bar recorded (of any symbol).
    pub fn end(&self) -> i64 {
        let size = i64::from(self.bar_seconds);
        self.bars
            .values()
            .filter_map(|b| b.last())
            .map(|b| b.time + size)
            .max()
            .unwrap_or(self.started)
    }
}

/// The little-endian `u32` at `at`, if the bytes are there.
fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The records taken so far.
struct Reader<'a> {
    path: &'a Path,
    symbols: HashMap<u32, String>,
    recording: Option<Recording>,
}

impl Reader<'_> {
    fn take(&mut self, record: Record) -> Result<(), String> {
        if let Record::Run {
            program,
            config,
            bar_seconds,
            started,
        } = record
        {
            if self.recording.is_some() {
                return Err("a second run record".into());
            }
            if bar_seconds == 0 {
                return Err("bars of 0 seconds".into());
            }
            self.recording = Some(Recording {
                file: self.path.to_path_buf(),
                program,
                config,
                bar_seconds,
                started,
                bars: BTreeMap::new(),
                history_newest: BTreeMap::new(),
                live: Vec::new(),
            });
            return Ok(());
        }
        let Some(rec) = self.recording.as_mut() else {
            return Err("a record before the run's".into());
        };
        let symbol = |symbols: &HashMap<u32, String>, id: u32| {
            symbols
                .get(&id)
                .cloned()
                .ok_or_else(|| format!("symbol id {id} never named"))
        };
        match record {
            Record::Run { .. } => {}
            Record::Symbol { id, symbol } => {
                if self.symbols.values().any(|s| *s == symbol) || self.symbols.contains_key(&id) {
                    return Err(format!("symbol {symbol} (id {id}) named twice"));
                }
                rec.bars.insert(symbol.clone(), Vec::new());
                self.symbols.insert(id, symbol);
            }
            Record::History { id, bars } => {
                let symbol = symbol(&self.symbols, id)?;
                if let Some(newest) = bars.iter().map(|b| b.time).max() {
                    let n = rec.history_newest.entry(symbol.clone()).or_insert(newest);
                    *n = (*n).max(newest);
                }
                rec.bars.entry(symbol).or_default().extend(bars);
            }
            Record::Live {
                id,
                bar,
                signal,
                order,
            } => {
                let symbol = symbol(&self.symbols, id)?;
                rec.bars.entry(symbol.clone()).or_default().push(bar);
                rec.live.push(RecordedLive {
                    symbol,
                    bar,
                    signal,
                    order,
                });
            }
        }
        Ok(())
    }
}
