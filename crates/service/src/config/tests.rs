//! The configuration's layers, checks and reference.
use std::io::Write;

use super::*;

#[test]
fn layers_apply_in_order_and_unknown_fields_fail() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "listen = \"127.0.0.1:9000\"\ncache_ttl_ms = 5").unwrap();
    let mut flags = serde_json::Map::new();
    flags.insert("cache_ttl_ms".into(), 7.into());
    let c = Config::load(Some(file.path()), &flags).unwrap();
    assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.cache_ttl_ms, 7);

    let mut bad = tempfile::NamedTempFile::new().unwrap();
    writeln!(bad, "lisen = \"127.0.0.1:9000\"").unwrap();
    let err = Config::load(Some(bad.path()), &serde_json::Map::new()).unwrap_err();
    assert!(err.to_string().contains("lisen"), "{err}");

    let mut zero = tempfile::NamedTempFile::new().unwrap();
    writeln!(zero, "usage_flush_interval_ms = 0").unwrap();
    assert!(Config::load(Some(zero.path()), &serde_json::Map::new()).is_err());
}

#[test]
fn a_toml_string_is_layered_and_checked_like_a_file() {
    let text = "listen = \"127.0.0.1:9000\"\ncache_ttl_ms = 5\n";
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(file, "{text}").unwrap();
    let mut flags = serde_json::Map::new();
    flags.insert("cache_ttl_ms".into(), 7.into());
    assert_eq!(
        Config::load_toml_str(text, &flags).unwrap(),
        Config::load(Some(file.path()), &flags).unwrap()
    );
    let none = serde_json::Map::new();
    for bad in [
        "lisen = 1",
        "usage_flush_interval_ms = 0",
        "listen = ",
        "[x",
    ] {
        assert!(Config::load_toml_str(bad, &none).is_err(), "{bad}");
    }
}

#[test]
fn every_option_is_in_the_reference_and_named_in_fields() {
    let serialized = serde_json::to_value(Config::default()).unwrap();
    let mut keys: Vec<&str> = serialized
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut fields = FIELDS.to_vec();
    fields.extend_from_slice(FILE_ONLY);
    keys.sort_unstable();
    fields.sort_unstable();
    assert_eq!(
        keys, fields,
        "FIELDS must list every option (it gates the env layer)"
    );
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap();
    for field in FIELDS {
        let env = format!("KEYHAVEN_{}", field.to_ascii_uppercase());
        assert!(
            doc.contains(&format!("| `{field}` | `{env}` |")),
            "{field} undocumented"
        );
    }
    for table in ["[gateway]", "[[proxy]]"] {
        assert!(doc.contains(table), "{table} undocumented");
    }
    for var in OTHER_ENV {
        assert!(doc.contains(&format!("`{var}`")), "{var} undocumented");
    }
}

#[test]
fn debug_output_hides_url_passwords() {
    let c = Config {
        redis_url: Some("redis://:hunter2@127.0.0.1:6379/0".into()),
        database_url: Some("postgres://kh:s3c@ret@db/keyhaven".into()),
        ..Config::default()
    };
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(
        shown.contains("redis://:<redacted>@127.0.0.1:6379/0"),
        "{shown}"
    );
    assert!(shown.contains("quota_flush_interval_ms"), "{shown}");
}

#[test]
fn unknown_environment_variables_are_named() {
    let vars = [
        ("KEYHAVEN_LISTEN", "x"),
        ("KEYHAVEN_LISTNE", "x"),
        ("KEYHAVEN_PEPPER", "x"),
        ("PATH", "x"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(
        Config::unknown_env(vars.into_iter()),
        vec!["KEYHAVEN_LISTNE"]
    );
}

#[test]
fn listen_takes_a_host_name_and_errors_name_the_option_and_its_source() {
    let mut flags = serde_json::Map::new();
    flags.insert("listen".into(), "localhost:8385".into());
    let config = Config::load(None, &flags).unwrap();
    assert_eq!(config.listen.port(), 8385);
    assert!(config.listen.ip().is_loopback());

    flags.insert("listen".into(), "nonsense".into());
    let e = Config::load(None, &flags).unwrap_err();
    assert_eq!(
        Config::describe_error(&e),
        "option `listen` (given on the command line): `nonsense` is not an address to listen \
         on: write IP:port or host:port, such as 127.0.0.1:8080 or localhost:8080"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "cache_ttl_ms = \"soon\"\n").unwrap();
    let e = Config::load(Some(&file), &serde_json::Map::new()).unwrap_err();
    let text = Config::describe_error(&e);
    assert_eq!(
        text,
        format!(
            "option `cache_ttl_ms` (in {}): invalid type: found string \"soon\", expected u64",
            file.display()
        )
    );
    assert!(
        !text.contains(".rs:") && !text.contains("serde_json"),
        "{text}"
    );
}

#[test]
fn envoy_authz_listen_is_off_by_default_and_read_like_listen() {
    let config = Config::load(None, &serde_json::Map::new()).unwrap();
    assert_eq!(config.envoy_authz_listen, None);
    let config = Config::load_toml_str(
        "envoy_authz_listen = \"localhost:9191\"\n",
        &serde_json::Map::new(),
    )
    .unwrap();
    let addr = config.envoy_authz_listen.unwrap();
    assert_eq!(addr.port(), 9191);
    assert!(addr.ip().is_loopback());
    let e = Config::load_toml_str("envoy_authz_listen = \"9191\"\n", &serde_json::Map::new())
        .unwrap_err();
    let text = Config::describe_error(&e);
    assert!(
        text.starts_with("option `envoy_authz_listen`")
            && text.contains("`9191` is not an address to listen on"),
        "{text}"
    );
    let e = Config::load_toml_str(
        "listen = \"127.0.0.1:9191\"\nenvoy_authz_listen = \"127.0.0.1:9191\"\n",
        &serde_json::Map::new(),
    )
    .unwrap_err();
    assert!(
        Config::describe_error(&e).contains("envoy_authz_listen 127.0.0.1:9191 is already used"),
        "{}",
        Config::describe_error(&e)
    );
}
