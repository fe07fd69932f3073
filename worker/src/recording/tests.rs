//! A recording written and read back, and every way of damaging one reported with its offset.

use super::format::codec;
use super::*;
use bridge::protocol::Bar;
use std::path::PathBuf;

fn bar(time: i64, close: f64) -> Bar {
    Bar {
        time,
        open: close,
        high: close,
        low: close,
        close,
        volume: 10.0,
    }
}

fn run() -> Record {
    Record::Run {
        program: "runner 0.1.0".into(),
        config: "symbols = [\"SPY\"]\n".into(),
        bar_seconds: 60,
        started: 1_700_000_000,
    }
}

fn path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ibbridge-recording-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir.join(name)
}

/// A recording of two symbols: history, then live bars interleaved.
fn written(name: &str) -> PathBuf {
    let p = path(name);
    let mut w = RecordingWriter::create(&p, &run()).expect("created");
    w.history("SPY", &[bar(60, 1.0), bar(120, 2.0)])
        .expect("history");
    w.history("QQQ", &[bar(120, 5.0)]).expect("history");
    w.live("SPY", &bar(180, 3.0), "buy", Some("run.1"))
        .expect("live");
    w.live("QQQ", &bar(180, 6.0), "hold", None).expect("live");
    // A repeat is kept once.
    w.live("SPY", &bar(180, 3.0), "buy", None).expect("live");
    w.flush().expect("flushed");
    p
}

#[test]
fn a_recording_reads_back_as_written() {
    let p = written("whole.rec");
    let r = Recording::open(&p).expect("read");
    assert_eq!(r.program, "runner 0.1.0");
    assert_eq!(r.config, "symbols = [\"SPY\"]\n");
    assert_eq!(r.bar_seconds, 60);
    assert_eq!(r.symbols().collect::<Vec<_>>(), vec!["QQQ", "SPY"]);
    let spy: Vec<i64> = r.bars("SPY").expect("SPY").iter().map(|b| b.time).collect();
    assert_eq!(spy, vec![60, 120, 180]);
    assert_eq!(r.bars("QQQ").expect("QQQ").len(), 2);
    assert_eq!(r.bars("AAPL"), None);
    assert_eq!(r.live.len(), 3);
    assert_eq!(r.live[0].signal, "buy");
    assert_eq!(r.live[0].order.as_deref(), Some("run.1"));
    // The history ended with the bar at 120: a replay starts at its end.
    assert_eq!(r.start(), 180);
    assert_eq!(r.end(), 240);
}

#[test]
fn a_recording_cut_anywhere_is_truncated_at_the_record_it_cuts() {
    let p = written("cut.rec");
    let bytes = std::fs::read(&p).expect("read");
    // Where each record starts.
    let mut starts = vec![HEADER_LEN as usize];
    while let Some(&at) = starts.last() {
        if at >= bytes.len() {
            break;
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        starts.push(at + 8 + len);
    }
    let cut = path("cut-short.rec");
    for n in 0..bytes.len() {
        std::fs::write(&cut, &bytes[..n]).expect("written");
        let result = Recording::open(&cut);
        if n < MAGIC.len() + 4 {
            assert_eq!(
                result.expect_err("header cut").kind,
                RecordingErrorKind::Truncated,
                "{n}"
            );
            continue;
        }
        if starts.contains(&n) {
            // Between records: a shorter recording (but one without its run).
            if n == HEADER_LEN as usize {
                assert!(result.is_err());
            } else {
                assert!(result.is_ok(), "{n}: {result:?}");
            }
            continue;
        }
        let e = result.expect_err("cut inside a record");
        let record = starts.iter().rev().find(|&&s| s < n).copied().unwrap_or(0);
        assert_eq!(e.kind, RecordingErrorKind::Truncated, "{n}");
        assert_eq!(e.offset, record as u64, "{n}");
        assert_eq!(e.file, cut);
        assert!(e.to_string().contains(&format!("offset {record}")), "{e}");
    }
}

#[test]
fn a_damaged_byte_other_versions_and_other_files_are_clear_errors() {
    let p = written("damaged.rec");
    let bytes = std::fs::read(&p).expect("read");
    // A flipped byte inside the second record's payload.
    let second = {
        let len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        12 + 8 + len
    };
    let mut damaged = bytes.clone();
    damaged[second + 10] ^= 0x40;
    let q = path("flipped.rec");
    std::fs::write(&q, &damaged).expect("written");
    let e = Recording::open(&q).expect_err("damaged");
    assert_eq!(e.offset, second as u64);
    assert!(matches!(e.kind, RecordingErrorKind::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");
    // A length beyond any record.
    let mut huge = bytes.clone();
    huge[second..second + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&q, &huge).expect("written");
    let e = Recording::open(&q).expect_err("huge");
    assert!(matches!(e.kind, RecordingErrorKind::Corrupt(_)), "{e}");
    assert_eq!(e.offset, second as u64);
    // Another version.
    let mut other = bytes.clone();
    other[8..12].copy_from_slice(&7u32.to_le_bytes());
    std::fs::write(&q, &other).expect("written");
    let e = Recording::open(&q).expect_err("version");
    assert_eq!(e.kind, RecordingErrorKind::Version(7));
    assert_eq!(
        e.to_string(),
        format!(
            "recording {} is of format version 7; this program reads version 1 (offset 8)",
            q.display()
        )
    );
    // Not a recording at all, and no file.
    std::fs::write(&q, "symbols = [\"SPY\"]\n").expect("written");
    let e = Recording::open(&q).expect_err("text");
    assert_eq!(e.kind, RecordingErrorKind::NotARecording);
    let e = Recording::open(&path("absent.rec")).expect_err("absent");
    assert!(matches!(e.kind, RecordingErrorKind::Io(_)), "{e}");
}

#[test]
fn records_that_make_no_sense_together_are_refused() {
    let frame = |record: &Record| {
        let payload = bincode::encode_to_vec(record, codec()).expect("encoded");
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend(crc32(&payload).to_le_bytes());
        out.extend(payload);
        out
    };
    let header = || {
        let mut h = MAGIC.to_vec();
        h.extend(FORMAT_VERSION.to_le_bytes());
        h
    };
    let q = path("nonsense.rec");
    let history = Record::History {
        id: 3,
        bars: vec![bar(60, 1.0)],
    };
    for (records, what) in [
        (vec![history.clone()], "a record before the run's"),
        (vec![run(), history], "symbol id 3 never named"),
        (vec![run(), run()], "a second run record"),
        (vec![], "no run recorded"),
    ] {
        let mut bytes = header();
        for r in &records {
            bytes.extend(frame(r));
        }
        std::fs::write(&q, &bytes).expect("written");
        let e = Recording::open(&q).expect_err(what);
        assert_eq!(e.kind, RecordingErrorKind::Inconsistent(what.into()), "{e}");
    }
}

#[test]
fn crc32_is_the_ieee_one() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}
