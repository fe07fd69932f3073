//! Writing a recording ([`RecordingWriter`]): records appended as a run receives its bars.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use bridge::protocol::Bar;

use super::format::{codec, crc32, Record, FORMAT_VERSION, MAGIC, MAX_RECORD};

/// History bars per record: a long history takes several, each well below [`MAX_RECORD`].
const HISTORY_CHUNK: usize = 16_384;

/// A recording being written: the header and the run's record at creation, then a record per
/// history and live bar, each symbol named before its first.
pub struct RecordingWriter {
    out: BufWriter<File>,
    ids: HashMap<String, u32>,
    buf: Vec<u8>,
}

impl RecordingWriter {
    /// Creates (or empties) the recording at `path`, of the run given by `run` (a
    /// [`Record::Run`]).
    pub fn create(path: &Path, run: &Record) -> io::Result<RecordingWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        let mut w = RecordingWriter {
            out,
            ids: HashMap::new(),
            buf: Vec::new(),
        };
        w.record(run)?;
        w.flush()?;
        Ok(w)
    }

    /// Appends `symbol`'s history bars (oldest first).
    pub fn history(&mut self, symbol: &str, bars: &[Bar]) -> io::Result<()> {
        let id = self.id(symbol)?;
        for chunk in bars.chunks(HISTORY_CHUNK) {
            self.record(&Record::History {
                id,
                bars: chunk.to_vec(),
            })?;
        }
        Ok(())
    }

    /// Appends a live bar of `symbol`, the strategy's `signal` on it and the `order` it placed.
    pub fn live(
        &mut self,
        symbol: &str,
        bar: &Bar,
        signal: &str,
        order: Option<&str>,
    ) -> io::Result<()> {
        let id = self.id(symbol)?;
        self.record(&Record::Live {
            id,
            bar: *bar,
            signal: signal.to_string(),
            order: order.map(str::to_string),
        })
    }

    /// Names `symbol` (one whose history could not be had: a replay knows it, without bars).
    pub fn name(&mut self, symbol: &str) -> io::Result<()> {
        self.id(symbol).map(|_| ())
    }

    /// Hands what was appended to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// `symbol`'s id, naming it first if it is new.
    fn id(&mut self, symbol: &str) -> io::Result<u32> {
        if let Some(&id) = self.ids.get(symbol) {
            return Ok(id);
        }
        let id = self.ids.len() as u32;
        self.record(&Record::Symbol {
            id,
            symbol: symbol.to_string(),
        })?;
        self.ids.insert(symbol.to_string(), id);
        Ok(id)
    }

    fn record(&mut self, record: &Record) -> io::Result<()> {
        self.buf.clear();
        bincode::encode_into_std_write(record, &mut self.buf, codec())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let len = u32::try_from(self.buf.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&crc32(&self.buf).to_le_bytes())?;
        self.out.write_all(&self.buf)
    }
}
