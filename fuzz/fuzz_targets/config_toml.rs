//! A configuration file (`--config`), loaded as `keyhaven serve` loads one: the same
//! layers, extraction and validation (`keyhaven_service::Config::load_toml_str`, which
//! `Config::load` shares), and `Config::describe_error` for what is refused. Nothing may
//! panic; a configuration that loads, written back out as TOML, loads to the same value.
//!
//! A `listen` that is `host:port` with a host name is resolved by DNS while loading:
//! slow and dependent on the network, so those inputs are skipped.
#![no_main]

use std::net::SocketAddr;

use keyhaven_service::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if resolves_a_host_name(text) {
        return;
    }
    let no_flags = serde_json::Map::new();
    match Config::load_toml_str(text, &no_flags) {
        Ok(config) => {
            // Not every value has a TOML form (an integer above i64::MAX given as a
            // string); those that do must read back the same.
            if let Ok(written) = toml::to_string(&config) {
                let again = Config::load_toml_str(&written, &no_flags)
                    .unwrap_or_else(|e| panic!("{written}\nreads back as an error: {e}"));
                assert_eq!(again, config, "{written}");
            }
        }
        Err(error) => {
            let message = Config::describe_error(&error);
            assert!(!message.is_empty(), "an error without a description");
        }
    }
});

/// Whether loading `text` would look `listen` up in the DNS.
fn resolves_a_host_name(text: &str) -> bool {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return false;
    };
    match table.get("listen") {
        Some(toml::Value::String(s)) => s.contains(':') && s.parse::<SocketAddr>().is_err(),
        // A date-time reads as text with colons.
        Some(toml::Value::Datetime(_)) => true,
        _ => false,
    }
}
