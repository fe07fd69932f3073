//! The configuration's tests: defaults, parsing errors with their lines, overrides in order,
//! and the values validation refuses.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn defaults_are_valid_and_round_trip_through_toml() {
    let cfg = Config::default();
    cfg.validate().unwrap();
    assert_eq!(Config::parse(&cfg.to_toml(), "x").unwrap(), cfg);
    assert_eq!(cfg.symbols.len(), 7);
}

#[test]
fn bridge_defaults_are_the_documented_ones() {
    let b = BridgeConfig::default();
    assert_eq!(b.ring_capacity, 1 << 20);
    assert_eq!(b.max_frame, 256 << 10);
    assert_eq!(b.heartbeat_ms, 100);
    assert_eq!(b.hang_timeout_ms, 3000);
    assert!(!b.spin, "spinning is asked for, never the default");
    assert_eq!(b.request_timeout_seconds, 30);
    assert_eq!(b.handshake_timeout_ms, 10_000);
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let e = Config::parse("backend = \"sim\"\n[history]\nbar_secs = 5\n", "f.toml").unwrap_err();
    assert!(e.to_string().starts_with("f.toml, line 3:"), "{e}");
    assert!(e.to_string().contains("bar_secs"), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn contracts_are_configured_per_symbol() {
    let cfg = Config::parse(
        "[ibkr.contracts.SHOP]\ncurrency = \"CAD\"\nprimary_exchange = \"TSE\"\n",
        "f.toml",
    )
    .unwrap();
    let shop = &cfg.ibkr.contracts["SHOP"];
    assert_eq!(shop.exchange, "SMART");
    assert_eq!(shop.currency, "CAD");
    assert_eq!(shop.primary_exchange.as_deref(), Some("TSE"));
    assert!(Config::parse("[ibkr.contracts.SHOP]\ncurency = \"CAD\"\n", "f.toml").is_err());
}

#[test]
fn wrong_types_are_named() {
    let e = Config::parse("symbols = \"SPY\"\n", "f.toml").unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(e.to_string().contains("sequence"), "{e}");
}

#[test]
fn flags_override_environment_which_overrides_the_file() {
    let env = |k: &str| match k {
        "RUNNER_SYMBOLS" => Some("AAA,BBB".to_string()),
        "RUNNER_SEED" => Some("7".to_string()),
        _ => None,
    };
    let flags = Overrides {
        symbols: Some("CCC".into()),
        ..Overrides::default()
    };
    let cfg = Config::load(None, env, &flags).unwrap();
    assert_eq!(cfg.symbols, vec!["CCC".to_string()]);
    assert_eq!(cfg.sim.seed, 7);
}

#[test]
fn invalid_values_are_refused() {
    let bad = |o: Overrides| Config::load(None, no_env, &o).unwrap_err().to_string();
    assert!(bad(Overrides {
        symbols: Some("SPY,spy".into()),
        ..Default::default()
    })
    .contains("invalid symbol \"spy\""));
    assert!(bad(Overrides {
        backend: Some("tws".into()),
        ..Default::default()
    })
    .contains("unknown backend"));
    assert!(bad(Overrides {
        duration: Some("soon".into()),
        ..Default::default()
    })
    .contains("duration must be a number"));
    assert!(bad(Overrides {
        backend: Some("ibkr".into()),
        gateway: Some("localhost".into()),
        ..Default::default()
    })
    .contains("HOST:PORT"));
}

#[test]
fn market_data_choices_and_the_history_end_are_checked() {
    let load = |toml: &str, end: Option<&str>| {
        let cfg = Config::parse(toml, "test")?;
        let mut cfg = cfg;
        cfg.apply(
            &Overrides {
                end: end.map(String::from),
                ..Default::default()
            },
            "flags",
        )?;
        cfg.validate().map(|()| cfg)
    };
    // A choice that is no such value is refused where the document is read, with its line.
    let bad = load("backend = \"ibkr\"\n[ibkr]\nwhat_to_show = \"FOO\"\n", None)
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("line 3") && bad.contains("what_to_show must be one of"),
        "{bad}"
    );
    let bad = load(
        "backend = \"ibkr\"\n[ibkr.contracts.EUR]\nwhat_to_show = \"bids\"\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("line 3") && bad.contains("what_to_show must be one of"),
        "{bad}"
    );
    for (toml, says) in [
        (
            "[ibkr]\nmarket_data_type = \"later\"\n",
            "market_data_type must be one of",
        ),
        (
            "[ibkr.contracts.ES]\nsec_type = \"OPT\"\n",
            "sec_type must be one of",
        ),
        (
            "[trading]\ntif = \"ioc\"\n",
            "time in force must be day or gtc",
        ),
        (
            "[history]\nend = \"soon\"\n",
            "the end of the history must be",
        ),
    ] {
        let bad = load(toml, None).unwrap_err().to_string();
        assert!(bad.contains(says), "{toml}: {bad}");
    }
    for silent in ["0", "721"] {
        let bad = load(
            &format!("backend = \"ibkr\"\n[ibkr]\nsilent_bars = {silent}\n"),
            None,
        );
        assert_eq!(
            bad.unwrap_err().to_string(),
            format!(
                "ibkr.silent_bars must be 1 to 720 (5-second bars: 5 s to an hour), got {silent}"
            )
        );
    }
    for (field, value, says) in [
        (
            "daily_restart",
            "\"25:00\"",
            "sim.daily_restart must be HH:MM (US/Eastern) or empty",
        ),
        (
            "daily_restart",
            "\"9:30\"",
            "sim.daily_restart must be HH:MM (US/Eastern) or empty",
        ),
        (
            "relogin_day",
            "\"funday\"",
            "sim.relogin_day must be a day of the week",
        ),
        (
            "restart_seconds",
            "86401",
            "sim.restart_seconds must be a day at most",
        ),
    ] {
        let bad = load(
            &format!("[sim]\ncalendar = true\n{field} = {value}\n"),
            None,
        );
        assert!(bad.unwrap_err().to_string().contains(says), "{field}");
    }
    let cal = load(
        "[sim]\ncalendar = true\ndaily_restart = \"17:05\"\nrelogin_day = \"Saturday\"\n",
        None,
    )
    .unwrap()
    .sim
    .calendar_options();
    assert_eq!(
        (cal.sessions, cal.daily_restart_minute, cal.relogin_weekday),
        (true, Some(17 * 60 + 5), Some(5))
    );
    let none = load(
        "[sim]\ncalendar = true\ndaily_restart = \"\"\nrelogin_day = \"\"\n",
        None,
    )
    .unwrap()
    .sim
    .calendar_options();
    assert_eq!(
        (none.daily_restart_minute, none.relogin_weekday),
        (None, None)
    );
    let off = load("", None).unwrap().sim.calendar_options();
    assert_eq!(
        off,
        worker::options::SimCalendar::default(),
        "off by default"
    );
    let ok = load("backend = \"ibkr\"\n[ibkr]\nsilent_bars = 1\n", None).unwrap();
    assert_eq!(ok.ibkr.silent_bars, 1);
    assert_eq!(load("", None).unwrap().ibkr.silent_bars, 12);
    let ok = load(
        "backend = \"ibkr\"\n[ibkr]\nwhat_to_show = \"midpoint\"\nuse_rth = false\n",
        Some("2023-11-14T22:13:20Z"),
    )
    .unwrap();
    assert_eq!(ok.history_end(), Some(1_700_000_000));
    assert_eq!(ok.ibkr.what_to_show, worker::options::WhatToShow::Midpoint);
    assert!(!ok.ibkr.use_rth);
    let ok = load("", Some("1700000000")).unwrap();
    assert_eq!(ok.history_end(), Some(1_700_000_000));
    let bad = load("", Some("yesterday")).unwrap_err().to_string();
    assert!(
        bad.contains("flags") && bad.contains("the end of the history must be Unix seconds"),
        "{bad}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let e = Config::from_file(Path::new("/nonexistent/runner.toml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config file /nonexistent/runner.toml: not found"
    );
}

#[test]
fn typed_choices_are_printed_as_they_are_written_and_read_back_the_same() {
    let toml = "backend = \"ibkr\"\n[history]\nend = \"2023-11-14T22:13:20Z\"\n\
                [trading]\ntif = \"gtc\"\n[ibkr]\nwhat_to_show = \"BID\"\n\
                market_data_type = \"delayed-frozen\"\n\
                [ibkr.contracts.ES]\nsec_type = \"FUT\"\nwhat_to_show = \"MIDPOINT\"\n";
    let cfg = Config::parse(toml, "test").unwrap();
    let printed = cfg.to_toml();
    for line in [
        "end = \"2023-11-14T22:13:20Z\"",
        "tif = \"gtc\"",
        "what_to_show = \"BID\"",
        "market_data_type = \"delayed-frozen\"",
        "sec_type = \"FUT\"",
        "what_to_show = \"MIDPOINT\"",
    ] {
        assert!(printed.contains(line), "{line} in {printed}");
    }
    assert_eq!(Config::parse(&printed, "printed").unwrap(), cfg);
}

#[test]
fn nats_settings_are_checked_and_a_token_is_never_printed() {
    let parsed = |text: &str| Config::parse(text, "x").and_then(|c| c.validate().map(|()| c));
    let cfg =
        parsed("[nats]\nurl = \"nats://127.0.0.1:4222\"\ntoken = \"s3cret-token\"\nbuffer = 10\n")
            .unwrap();
    assert_eq!(cfg.nats.token.as_deref(), Some("s3cret-token"));
    assert_eq!(cfg.nats.buffer, 10);
    let printed = cfg.to_toml();
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(
        printed.contains("url = \"nats://127.0.0.1:4222\""),
        "{printed}"
    );
    for (text, problem) in [
        (
            "[nats]\nurl = \"127.0.0.1:4222\"\n",
            "nats.url must be nats://HOST:PORT",
        ),
        ("[nats]\nbuffer = 0\n", "nats.buffer must be at least 1"),
        (
            "[nats]\nurl = \"nats://me:pw@127.0.0.1:4222\"\n",
            "must not hold credentials",
        ),
        (
            "[nats]\nretention_seconds = 60\nduplicate_window_seconds = 120\n",
            "must not exceed nats.retention_seconds",
        ),
    ] {
        let e = parsed(text).unwrap_err().to_string();
        assert!(e.contains(problem), "{text}: {e}");
    }
}

#[test]
fn a_replay_needs_a_readable_recording_of_its_symbols_and_bar_size() {
    let bad = |o: Overrides| Config::load(None, no_env, &o).unwrap_err().to_string();
    let e = bad(Overrides {
        backend: Some("replay".into()),
        ..Default::default()
    });
    assert!(
        e.contains("needs a recording: replay.file or --replay FILE"),
        "{e}"
    );
    let missing = std::env::temp_dir().join(format!("absent-{}.rec", std::process::id()));
    let e = bad(Overrides {
        replay: Some(missing.clone()),
        ..Default::default()
    });
    assert!(
        e.contains(&format!("recording {}", missing.display())),
        "{e}"
    );
    // A replay never runs on a hub's market (its orders would go to the hub's broker).
    let e = bad(Overrides {
        replay: Some(missing),
        hub: Some("desk".into()),
        ..Default::default()
    });
    assert!(e.contains("a replay runs a worker of its own"), "{e}");
}

#[test]
fn a_replay_of_a_stream_and_a_hub_over_nats_are_checked() {
    let load = |o: Overrides| Config::load(None, no_env, &o);
    let cfg = load(Overrides {
        replay: Some("nats://127.0.0.1:4222/desk".into()),
        replay_range: (
            Some("2026-12-07T14:30:00Z".into()),
            Some("1796700000".into()),
        ),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(cfg.backend, BackendKind::Replay);
    assert_eq!(cfg.nats.url.as_deref(), Some("nats://127.0.0.1:4222"));
    assert_eq!(cfg.replay.stream, "desk");
    assert_eq!(cfg.replay.from.map(|t| t.0), Some(1_796_653_800));
    assert_eq!(cfg.replay.file, None);
    let bad = |o: Overrides| load(o).unwrap_err().to_string();
    let e = bad(Overrides {
        replay: Some("nats://127.0.0.1:4222".into()),
        ..Default::default()
    });
    assert!(e.contains("a stream is nats://HOST:PORT/HUB"), "{e}");
    let e = bad(Overrides {
        replay: Some("nats://127.0.0.1:4222/desk".into()),
        replay_range: (Some("2000".into()), Some("1000".into())),
        ..Default::default()
    });
    assert!(
        e.contains("replay.from (") && e.contains(") is after replay.to ("),
        "{e}"
    );
    let e = bad(Overrides {
        replay: Some("nats://127.0.0.1:4222/a.b".into()),
        ..Default::default()
    });
    assert!(e.contains("replay.stream is a hub's name"), "{e}");
    // A hub over NATS: its name and its server.
    let cfg = load(Overrides {
        nats: Some("nats://10.0.0.2:4222".into()),
        hub: Some("desk".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(cfg.hub.over_nats);
    assert_eq!(cfg.nats.url.as_deref(), Some("nats://10.0.0.2:4222"));
    let e = bad(Overrides {
        nats: Some("nats://10.0.0.2:4222".into()),
        ..Default::default()
    });
    assert!(e.contains("hub.over_nats needs the hub's name"), "{e}");
    let e = Config::parse("[hub]\nname = \"desk\"\nover_nats = true\n", "f.toml")
        .and_then(|c| c.validate().map(|()| c))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hub.over_nats needs the hub's NATS server"),
        "{e}"
    );
}
