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
