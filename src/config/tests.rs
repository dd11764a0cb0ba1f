use super::*;

fn parse(text: &str) -> Result<PipelineConfig, ConfigError> {
    PipelineConfig::parse(Path::new("/etc/cs/p.toml"), text, |_| None)
}

fn error(text: &str) -> String {
    parse(text).expect_err("config must be refused").to_string()
}

const MINIMAL: &str = "[source]\ntype = \"generator\"\n[sink]\ntype = \"null\"\n";

#[test]
fn minimal_config_takes_the_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.engine, EngineSettings::default());
    assert_eq!(config.sink, SinkSpec::Null);
    assert!(
        matches!(config.source, SourceSpec::Generator(g) if g.count.is_none()),
        "no count: runs until stopped"
    );
}

#[test]
fn sizes_durations_and_relative_paths() {
    let text = "[engine]\nworkers = 1\nring_bytes = \"4MiB\"\nrecord_bytes_max = 65536\n\
                [source]\ntype = \"file\"\npath = \"in.ndjson\"\ncheckpoint = \"/abs/in.ckpt\"\ncheckpoint_interval = \"1m30s\"\n\
                [sink]\ntype = \"file\"\npath = \"out/o.ndjson\"\nbuffer_bytes = \"64KiB\"\n";
    let config = parse(text).unwrap();
    assert_eq!(config.engine.ring_bytes, 4 << 20);
    assert_eq!(config.engine.record_bytes_max, 65536);
    assert_eq!(
        config.source,
        SourceSpec::File {
            path: PathBuf::from("/etc/cs/in.ndjson"),
            checkpoint: Some(PathBuf::from("/abs/in.ckpt")),
            checkpoint_interval: Duration::from_secs(90),
        }
    );
    assert!(
        matches!(config.sink, SinkSpec::File { ref path, buffer_bytes: 65536, .. } if path == Path::new("/etc/cs/out/o.ndjson"))
    );
}

#[test]
fn unknown_key_names_line_column_and_suggests() {
    let e = error("[engine]\nwrokers = 2\n[source]\ntype = \"stdin\"\n[sink]\ntype = \"null\"\n");
    assert!(e.starts_with("error: unknown field `wrokers`\n  --> /etc/cs/p.toml:2:1\n"), "{e}");
    assert!(e.contains("2 | wrokers = 2\n    | ^^^^^^^"), "{e}");
    assert!(e.contains("hint: did you mean `workers`?"), "{e}");
}

#[test]
fn wrong_type_points_at_the_value() {
    let e =
        error("[engine]\nworkers = \"two\"\n[source]\ntype = \"stdin\"\n[sink]\ntype = \"null\"\n");
    assert!(e.contains("p.toml:2:11"), "{e}");
    assert!(e.contains("invalid type: string \"two\", expected u64"), "{e}");
    assert!(e.contains("hint: a whole number, without quotes"), "{e}");
    let e = error("[source]\ntype = 5\n[sink]\ntype = \"null\"\n");
    assert!(e.contains("p.toml:2:8") && e.contains("hint: a string, in double quotes"), "{e}");
    let e = error(
        "[source]\ntype = \"stdin\"\n[sink]\ntype = \"file\"\npath = \"o\"\nappend = \"yes\"\n",
    );
    assert!(e.contains("p.toml:6:10") && e.contains("hint: true or false, without quotes"), "{e}");
}

#[test]
fn impossible_values_are_refused_with_hints() {
    let e = error(&format!("[engine]\nworkers = 0\n{MINIMAL}"));
    assert!(e.contains("engine.workers: 0 workers is outside 1..=256"), "{e}");
    assert!(e.contains("p.toml:2:11"), "{e}");
    let e =
        error(&format!("[engine]\nring_bytes = \"8KiB\"\nrecord_bytes_max = \"1MiB\"\n{MINIMAL}"));
    assert!(e.contains("engine.ring_bytes") && e.contains("cannot hold a record"), "{e}");
    assert!(e.contains("hint: raise ring_bytes to at least"), "{e}");
    let e = error(&format!("[engine]\nring_bytes = \"5000\"\n{MINIMAL}"));
    assert!(e.contains("not a power of two"), "{e}");
}

#[test]
fn bad_size_and_duration_show_the_value_with_a_caret() {
    let e = error(&format!("[engine]\nring_bytes = \"8MBs\"\n{MINIMAL}"));
    assert!(e.contains("invalid size \"8MBs\""), "{e}");
    assert!(e.contains("p.toml:2:14"), "{e}");
    let e = error(
        "[source]\ntype = \"file\"\npath = \"x\"\ncheckpoint_interval = \"5 minutes\"\n[sink]\ntype = \"null\"\n",
    );
    assert!(e.contains("invalid duration \"5 minutes\""), "{e}");
    assert!(e.contains("p.toml:4:23"), "{e}");
}

#[test]
fn unknown_types_and_misplaced_fields() {
    let e = error("[source]\ntype = \"fiel\"\n[sink]\ntype = \"null\"\n");
    assert!(
        e.contains("unknown source type \"fiel\"") && e.contains("did you mean \"file\"?"),
        "{e}"
    );
    assert!(e.contains("p.toml:2:8"), "{e}");
    let e = error("[source]\ntype = \"generator\"\npath = \"x\"\n[sink]\ntype = \"null\"\n");
    assert!(e.contains("`path` does not apply to type \"generator\""), "{e}");
    assert!(e.contains("p.toml:3:8"), "{e}");
    let e = error("[source]\ntype = \"file\"\n[sink]\ntype = \"null\"\n");
    assert!(e.contains("type \"file\" needs `path`") && e.contains("hint: add path ="), "{e}");
}

#[test]
fn missing_sections_are_named() {
    let e = error("[sink]\ntype = \"null\"\n");
    assert!(e.contains("missing [source] section"), "{e}");
    let e = error("[source]\ntype = \"stdin\"\n");
    assert!(e.contains("missing [sink] section"), "{e}");
}

#[test]
fn retry_environment_is_applied_and_config_wins() {
    let env = |var: &str| (var == "CORESTREAM_RETRY_INITIAL").then(|| "5s".to_string());
    let config = PipelineConfig::parse(Path::new("p.toml"), MINIMAL, env).unwrap();
    assert_eq!(config.retry.initial.value, Duration::from_secs(5));
    let text = format!("{MINIMAL}[retry]\ninitial = \"7s\"\n");
    let config = PipelineConfig::parse(Path::new("p.toml"), &text, env).unwrap();
    assert_eq!(config.retry.initial.value, Duration::from_secs(7));
    let bad = |var: &str| (var == "CORESTREAM_RETRY_INITIAL").then(|| "soon".to_string());
    let e = PipelineConfig::parse(Path::new("p.toml"), MINIMAL, bad).unwrap_err().to_string();
    assert!(e.contains("CORESTREAM_RETRY_INITIAL") && e.contains("soon"), "{e}");
}

#[test]
fn sink_batching_keys_are_read_per_type() {
    let text = "[source]\ntype = \"stdin\"\n[sink]\ntype = \"file\"\npath = \"o.zst\"\n\
                flush_records = 100\nflush_bytes = \"64KiB\"\nlinger = \"5ms\"\ndedup = true\n\
                compression = \"zstd\"\ncompression_level = 3\ntimeout = \"10s\"\n\
                breaker_failures = 3\nbreaker_cool_down = \"1m\"\n";
    let config = parse(text).unwrap();
    let SinkSpec::File { buffer_bytes, writer, .. } = config.sink else { panic!("file sink") };
    assert_eq!(buffer_bytes, 65536);
    assert_eq!(
        writer,
        WriterSettings {
            flush_bytes: 65536,
            flush_records: 100,
            linger: Some(Duration::from_millis(5)),
            dedup: true,
            compression: Compression::Zstd { level: 3 },
            timeout: Some(Duration::from_secs(10)),
        }
    );
    assert_eq!(
        config.breaker,
        BreakerConfig { failures_to_open: 3, cool_down: Duration::from_secs(60) }
    );
    let stdout =
        parse("[source]\ntype = \"stdin\"\n[sink]\ntype = \"stdout\"\nlinger = \"1s\"\n").unwrap();
    assert!(
        matches!(stdout.sink, SinkSpec::Stdout { writer, .. } if writer.linger == Some(Duration::from_secs(1)))
    );
    let null = parse(&format!("{MINIMAL}breaker_failures = 2\n")).unwrap();
    assert_eq!(null.breaker.failures_to_open, 2);
}

#[test]
fn sink_batching_errors_point_at_the_key() {
    let sink = |extra: &str| {
        error(&format!(
            "[source]\ntype = \"stdin\"\n[sink]\ntype = \"file\"\npath = \"o\"\n{extra}"
        ))
    };
    let e = sink("compression = \"lz4\"\n");
    assert!(e.contains("unknown compression \"lz4\"") && e.contains("p.toml:6:15"), "{e}");
    assert!(e.contains("known: \"none\", \"zstd\""), "{e}");
    let e = sink("compression = \"zsdt\"\n");
    assert!(e.contains("did you mean \"zstd\"?"), "{e}");
    let e = sink("compression_level = 5\n");
    assert!(e.contains("compression_level needs compression = \"zstd\""), "{e}");
    assert!(e.contains("p.toml:6:21"), "{e}");
    let e = sink("compression = \"zstd\"\ncompression_level = 40\n");
    assert!(e.contains("sink.compression_level: zstd level 40 must be from 1 to 19"), "{e}");
    assert!(e.contains("p.toml:7:21"), "{e}");
    let e = sink("flush_records = 0\n");
    assert!(
        e.contains("sink.flush_records: must be from 1 to 1048576") && e.contains("p.toml:6:17"),
        "{e}"
    );
    let e = sink("linger = \"2m\"\n");
    assert!(e.contains("sink.linger: must be more than 0s and at most 1m"), "{e}");
    let e = sink("timeout = \"0s\"\n");
    assert!(
        e.contains("sink.timeout: must be more than 0s and at most 1h")
            && e.contains("p.toml:6:11"),
        "{e}"
    );
    let e = sink("timeout = \"soon\"\n");
    assert!(e.contains("invalid duration \"soon\""), "{e}");
    let e = sink("buffer_bytes = \"64KiB\"\nflush_bytes = \"64KiB\"\n");
    assert!(e.contains("set either buffer_bytes or flush_bytes, not both"), "{e}");
    let e = sink("breaker_failures = 0\n");
    assert!(
        e.contains(
            "sink.breaker_failures: circuit breaker failures_to_open 0 must be from 1 to 1000000"
        ),
        "{e}"
    );
    assert!(e.contains("p.toml:6:20"), "{e}");
    let e = sink("breaker_cool_down = \"2h\"\n");
    assert!(e.contains("cool_down 2h must be more than 0s and at most 1h"), "{e}");
    let e = error(&format!("{MINIMAL}timeout = \"5s\"\n"));
    assert!(e.contains("`timeout` does not apply to type \"null\""), "{e}");
    assert!(e.contains("type \"null\" takes: breaker_failures, breaker_cool_down"), "{e}");
    let e =
        error("[source]\ntype = \"stdin\"\n[sink]\ntype = \"stdout\"\ncompression = \"zstd\"\n");
    assert!(e.contains("`compression` does not apply to type \"stdout\""), "{e}");
}

#[test]
fn adaptive_batch_keys_and_their_errors() {
    let config = parse(&format!(
        "[engine]\nbatch_records = 256\nbatch_time_target = \"2ms\"\nbatch_records_max = 1024\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(
        config.batch_sizing,
        Some(BatchSizing {
            records_min: 32,
            records_max: 1024,
            time_target: Duration::from_millis(2)
        })
    );
    assert_eq!(parse(MINIMAL).unwrap().batch_sizing, None, "fixed unless a target is set");
    let e = error(&format!("[engine]\nbatch_records_min = 8\n{MINIMAL}"));
    assert!(e.contains("batch_records_min and batch_records_max need batch_time_target"), "{e}");
    assert!(e.contains("p.toml:2:21") && e.contains("hint: add batch_time_target"), "{e}");
    let e = error(&format!(
        "[engine]\nbatch_records = 512\nbatch_time_target = \"1ms\"\nbatch_records_max = 50\n{MINIMAL}"
    ));
    assert!(
        e.contains(
            "engine.batch_records_min: 64 must be at least 1 and at most batch_records_max (50)"
        ),
        "{e}"
    );
    let e = error(&format!(
        "[engine]\nbatch_records = 512\nbatch_time_target = \"1ms\"\nbatch_records_min = 1\nbatch_records_max = 100\n{MINIMAL}"
    ));
    assert!(e.contains("engine.batch_records: the starting size 512 is outside"), "{e}");
    assert!(e.contains("p.toml:2:17"), "{e}");
    let e = error(&format!("[engine]\nbatch_time_target = \"5s\"\n{MINIMAL}"));
    assert!(e.contains("engine.batch_time_target: must be more than 0s and at most 1s"), "{e}");
    assert!(e.contains("p.toml:2:21"), "{e}");
    let e = error(&format!(
        "[engine]\nbatch_time_target = \"1ms\"\nbatch_records_max = 100000\n{MINIMAL}"
    ));
    assert!(e.contains("engine.batch_records_max: 100000 is above the limit of 65536"), "{e}");
}

#[test]
fn sink_timeout_defaults_to_30s_and_off_writes_inline() {
    let file = |extra: &str| {
        let text =
            format!("[source]\ntype = \"stdin\"\n[sink]\ntype = \"file\"\npath = \"o\"\n{extra}");
        match parse(&text).unwrap().sink {
            SinkSpec::File { writer, .. } => writer.timeout,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(file(""), Some(Duration::from_secs(30)));
    assert_eq!(file("timeout = \"off\"\n"), None);
    assert_eq!(file("timeout = \"1m30s\"\n"), Some(Duration::from_secs(90)));
    let e = error("[source]\ntype = \"stdin\"\n[sink]\ntype = \"stdout\"\ntimeout = \"5 s\"\n");
    assert!(
        e.contains("invalid duration \"5 s\"") && e.contains("or \"off\" to write inline"),
        "{e}"
    );
    assert!(e.contains("p.toml:5:"), "{e}");
}

#[test]
fn a_checkpointed_source_makes_the_file_sink_append() {
    let source = |checkpoint: &str| {
        format!(
            "[source]\ntype = \"file\"\npath = \"in.ndjson\"\n{checkpoint}[sink]\ntype = \"file\"\npath = \"o\"\n"
        )
    };
    let append_of = |text: &str| match parse(text).unwrap().sink {
        SinkSpec::File { append, .. } => append,
        other => panic!("{other:?}"),
    };
    assert!(!append_of(&source("")), "no checkpoint: truncate by default");
    assert!(append_of(&source("checkpoint = \"in.ckpt\"\n")));
    assert!(append_of(&(source("checkpoint = \"in.ckpt\"\n") + "append = true\n")));
    let e = error(&(source("checkpoint = \"in.ckpt\"\n") + "append = false\n"));
    assert!(e.contains("append = false with a checkpointed source"), "{e}");
    assert!(e.contains("p.toml:8:10"), "{e}");
    assert!(e.contains("hint: remove `append`"), "{e}");
    assert!(!append_of(&(source("") + "append = false\n")));
}
