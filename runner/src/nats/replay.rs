//! A replay from a hub's JetStream stream (`runner run --replay nats://HOST:PORT/HUB --from T
//! --to T`): the stream's bars of the run's symbols are read once, the span before `from`
//! (at most `history.duration_seconds` of it) as each symbol's history and `from` to `to` as
//! the live bars, into a recording of the run's own ([`worker::recording`]), which is then
//! replayed like a file. The recording is removed when the run ends ([`StreamRecording`]).
//!
//! Invariants: reading the stream is bounded (each message awaited `WAIT` at most, at most
//! `MAX_BARS` in all); a symbol the stream has no bar of, or a range without a live bar, is a
//! clear error naming what the stream holds; only bars of the run's size are taken.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use bridge::protocol::Bar;
use futures_util::StreamExt;
use worker::recording::{Record, RecordingWriter};
use worker::remote::wire::{bars_subject, stream_name, subject_prefix, PublishedBar};

use crate::config::{Config, HistoryEnd};

/// How long one message of the stream is awaited.
const WAIT: Duration = Duration::from_secs(5);
/// Most bars read from a stream for one replay.
const MAX_BARS: usize = 20_000_000;

/// The recording a replay from a stream made, removed when dropped.
pub struct StreamRecording(PathBuf);

impl Drop for StreamRecording {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// When `cfg` replays a stream: reads it, writes the recording, and points `cfg` at it (the
/// recording's checks then made as for a file). `None` when it replays a file or nothing.
pub fn materialize(cfg: &mut Config) -> Result<Option<StreamRecording>> {
    if cfg.backend != crate::config::BackendKind::Replay || cfg.replay.stream.is_empty() {
        return Ok(None);
    }
    let hub = cfg.replay.stream.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bars = runtime.block_on(read(cfg, &hub))?;
    let path = std::env::temp_dir().join(format!("ibbridge-replay-{}.rec", std::process::id()));
    let guard = StreamRecording(path.clone());
    write(cfg, &hub, &bars, &path)?;
    cfg.replay.stream = String::new();
    cfg.replay.file = Some(path);
    cfg.validate()?;
    Ok(Some(guard))
}

/// Every bar of the run's symbols and size in hub `hub`'s stream, per symbol in time order.
async fn read(cfg: &Config, hub: &str) -> Result<BTreeMap<String, Vec<Bar>>> {
    let client = super::publish::connect(&cfg.nats, hub)
        .await
        .map_err(|e| anyhow!("replay from NATS: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let name = stream_name(hub);
    let stream = tokio::time::timeout(WAIT, js.get_stream(&name))
        .await
        .map_err(|_| anyhow!("stream {name}: no answer within {WAIT:?}"))?
        .with_context(|| format!("stream {name}"))?;
    let subjects: BTreeMap<String, String> = cfg
        .symbols
        .iter()
        .map(|s| (bars_subject(hub, s), s.clone()))
        .collect();
    let consumer = tokio::time::timeout(
        WAIT,
        stream.create_consumer(pull::OrderedConfig {
            filter_subject: format!("{}.bars.>", subject_prefix(hub)),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        }),
    )
    .await
    .map_err(|_| anyhow!("stream {name}: no consumer within {WAIT:?}"))?
    .with_context(|| format!("stream {name}"))?;
    let mut messages = consumer
        .messages()
        .await
        .with_context(|| format!("stream {name}"))?;
    let size = cfg.history.bar_seconds;
    let prefix = format!("{}.bars.", subject_prefix(hub));
    let (mut out, mut read) = (BTreeMap::<String, Vec<Bar>>::new(), 0usize);
    // What the stream holds: each symbol's subject token, with its bar sizes.
    let mut held = BTreeMap::<String, std::collections::BTreeSet<u32>>::new();
    loop {
        // A stream with nothing (more) of these subjects says so by its silence.
        let Ok(next) = tokio::time::timeout(WAIT, messages.next()).await else {
            break;
        };
        let Some(message) = next else { break };
        let message = message.with_context(|| format!("stream {name}"))?;
        read += 1;
        if read > MAX_BARS {
            bail!("stream {name}: more than {MAX_BARS} bars for these symbols");
        }
        let last = message.info().map(|i| i.pending == 0).unwrap_or(false);
        let symbol = subjects.get(message.subject.as_str());
        let Ok(bar) = serde_json::from_slice::<PublishedBar>(&message.payload) else {
            tracing::warn!(subject = %message.subject, "a message that is not a bar, ignored");
            match last {
                true => break,
                false => continue,
            }
        };
        let token = message
            .subject
            .as_str()
            .strip_prefix(&prefix)
            .unwrap_or_default();
        held.entry(token.to_string())
            .or_default()
            .insert(bar.bar_seconds);
        if let (Some(symbol), true) = (symbol, bar.bar_seconds == size) {
            out.entry(symbol.clone()).or_default().push(bar.bar());
        }
        if last {
            break;
        }
    }
    for bars in out.values_mut() {
        bars.sort_by_key(|b| b.time);
        bars.dedup_by_key(|b| b.time);
    }
    let missing: Vec<&str> = cfg
        .symbols
        .iter()
        .map(String::as_str)
        .filter(|s| !out.contains_key(*s))
        .collect();
    if !missing.is_empty() {
        let held: Vec<String> = held
            .iter()
            .map(|(s, sizes)| {
                let sizes: Vec<String> = sizes.iter().map(|z| format!("{z} s")).collect();
                format!("{s} ({})", sizes.join(", "))
            })
            .collect();
        bail!(
            "stream {name} has no bars of {size} s of {} (it holds {})",
            missing.join(", "),
            match held.is_empty() {
                true => "no bars".to_string(),
                false => held.join(", "),
            }
        );
    }
    Ok(out)
}

/// The recording of `bars` split at the replay's `from`, up to its `to`.
fn write(
    cfg: &Config,
    hub: &str,
    bars: &BTreeMap<String, Vec<Bar>>,
    path: &std::path::Path,
) -> Result<()> {
    let first = bars
        .values()
        .filter_map(|b| b.first())
        .map(|b| b.time)
        .min();
    let last = bars.values().filter_map(|b| b.last()).map(|b| b.time).max();
    let (Some(first), Some(last)) = (first, last) else {
        bail!("stream {}: no bars", stream_name(hub));
    };
    let span = cfg.history.duration_seconds as i64;
    // Unless told: the first `history.duration_seconds` held are the history, the rest live.
    let from = cfg
        .replay
        .from
        .map(|t| t.0)
        .unwrap_or_else(|| (first + span).min(last));
    let to = cfg.replay.to.map(|t| t.0).unwrap_or(i64::MAX);
    let live: Vec<(&str, &Bar)> = {
        let mut live: Vec<(&str, &Bar)> = bars
            .iter()
            .flat_map(|(s, b)| b.iter().map(move |bar| (s.as_str(), bar)))
            .filter(|(_, b)| b.time >= from && b.time <= to)
            .collect();
        live.sort_by_key(|(s, b)| (b.time, *s));
        live
    };
    if live.is_empty() {
        bail!(
            "stream {}: no bar from {} to {} (it holds {} to {})",
            stream_name(hub),
            HistoryEnd(from),
            HistoryEnd(to.min(last)),
            HistoryEnd(first),
            HistoryEnd(last)
        );
    }
    let run = Record::Run {
        program: format!(
            "runner {} (from stream {})",
            env!("CARGO_PKG_VERSION"),
            stream_name(hub)
        ),
        config: cfg.to_toml(),
        bar_seconds: cfg.history.bar_seconds,
        started: base::unix_time::now().as_secs() as i64,
    };
    let mut w = RecordingWriter::create(path, &run)
        .with_context(|| format!("recording {}", path.display()))?;
    for (symbol, b) in bars {
        let history: Vec<Bar> = b
            .iter()
            .filter(|bar| bar.time < from && bar.time >= from - span)
            .copied()
            .collect();
        match history.is_empty() {
            true => w.name(symbol)?,
            false => w.history(symbol, &history)?,
        }
    }
    for (symbol, bar) in live {
        w.live(symbol, bar, "", None)?;
    }
    w.flush()?;
    tracing::info!(
        stream = %stream_name(hub),
        from = %HistoryEnd(from),
        to = %HistoryEnd(to.min(last)),
        "replaying the stream's bars"
    );
    Ok(())
}
