//! The `keyhaven` binary as a user runs it: real processes, real pipes, exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers may fail loudly

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

use keyhaven_core::parse;

fn keyhaven(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyhaven"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn one_key(prefix: &str) -> String {
    let o = keyhaven(&["generate", "--prefix", prefix]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim_end().to_owned()
}

#[test]
fn generate_prints_distinct_well_formed_keys_one_a_line() {
    let o = keyhaven(&["generate", "--prefix", "acme_live", "--count", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1000);
    let unique: HashSet<&str> = lines.iter().copied().collect();
    assert_eq!(unique.len(), 1000);
    for line in lines {
        let k = parse(line).unwrap();
        assert_eq!(k.prefix(), "acme_live");
    }
}

#[test]
fn generate_json_carries_key_id_and_display_form() {
    let o = keyhaven(&[
        "generate",
        "--prefix",
        "acme_test",
        "--count",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap();
        let parsed = parse(key).unwrap();
        assert_eq!(v["key_id"], parsed.key_id());
        assert_eq!(v["prefix"], "acme_test");
        let display = v["display"].as_str().unwrap();
        assert_eq!(
            display,
            format!(
                "acme_test_{}_\u{2026}{}",
                parsed.key_id(),
                &key[key.len() - 4..]
            )
        );
        assert!(!display.contains(parsed.secret().expose_secret()));
    }
}

#[test]
fn generate_refuses_bad_prefixes_and_counts_with_a_usage_error() {
    for (args, needle) in [
        (vec!["generate", "--prefix", "Acme"], "lowercase letter"),
        (vec!["generate", "--prefix", "acme-live"], "'-'"),
        (vec!["generate", "--prefix", ""], "empty"),
        (
            vec!["generate", "--prefix", "abcdefghijklmnopqrstu"],
            "at most 20",
        ),
        (
            vec!["generate", "--prefix", "acme", "--count", "0"],
            "--count",
        ),
        (
            vec!["generate", "--prefix", "acme", "--count", "-5"],
            "'-5'",
        ),
        (
            vec!["generate", "--prefix", "acme", "--count", "10000001"],
            "--count",
        ),
        (vec!["generate"], "--prefix"),
    ] {
        let o = keyhaven(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stdout(&o).is_empty(), "{args:?} printed keys");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn generate_stops_quietly_when_the_reader_goes_away() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyhaven"))
        .args(["generate", "--prefix", "acme", "--count", "5000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(parse(first.trim_end()).is_ok());
    let out = child.wait_with_output().unwrap(); // stdout dropped above: pipe closed
    assert!(out.status.success(), "{:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inspect_shows_the_parts_of_a_valid_key_but_never_its_secret() {
    let key = one_key("acme_live");
    let parsed = parse(&key).unwrap();
    let o = keyhaven(&["inspect", &key]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("prefix:   acme_live\n"), "{out}");
    assert!(
        out.contains(&format!("key id:   {}\n", parsed.key_id())),
        "{out}"
    );
    assert!(out.contains("checksum: valid"), "{out}");
    let secret = parsed.secret().expose_secret();
    for window in secret.as_bytes().windows(8) {
        let w = std::str::from_utf8(window).unwrap();
        assert!(
            !out.contains(w) && !stderr(&o).contains(w),
            "secret leaked: {out}"
        );
    }
}

#[test]
fn inspect_rejects_a_typo_with_exit_1_and_still_shows_the_key_id() {
    let key = one_key("acme");
    let parsed = parse(&key).unwrap();
    let mut typo = key.clone().into_bytes();
    typo[25] = if typo[25] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let o = keyhaven(&["inspect", &typo]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("checksum: INVALID"), "{out}");
    assert!(out.contains(parsed.key_id()), "{out}");
    assert!(!out.contains(&typo[18..48]), "{out}");
}

#[test]
fn inspect_rejects_malformed_input_saying_which_check_failed() {
    for (input, needle) in [
        ("", "length"),
        ("acme_live_short", "length"),
        (&"x".repeat(1000), "length"),
        (
            "acme_live_7Gx9QbWkP2mZ_4fT8cK9aB3cQWERTYUPASDFGHJKLZX0DRSQf",
            "character",
        ),
        (
            "acme-live_7Gx9QbWkP2mZ_4fT8cK9aB3cQWERTYUPASDFGHJKLZX3DRSQf",
            "character",
        ),
        (
            "Acme_live_7Gx9QbWkP2mZ_4fT8cK9aB3cQWERTYUPASDFGHJKLZX3DRSQf",
            "prefix",
        ),
        (
            "acme_live_7Gx9QbWkP2mZ_4fT8cK9aB3cQWERTYUPASDFGHJKLZX3DRSQg",
            "INVALID",
        ),
        (
            "acme_live_7Gx9QbWkP2mZ_4fT8cK9aB3cQ\u{0410}RTYUPASDFGHJKLZX3DRSQ",
            "character",
        ),
    ] {
        let o = keyhaven(&["inspect", input]);
        assert_eq!(o.status.code(), Some(1), "{input:?}");
        assert!(stdout(&o).contains(needle), "{input:?}: {}", stdout(&o));
    }
    // The published example key (docs/test-vectors.json) is well formed.
    let o = keyhaven(&[
        "inspect",
        "acme_live_7Gx9QbWkP2mZ_4fT8cK9aB3cQWERTYUPASDFGHJKLZX3DRSQf",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn inspect_reads_the_key_from_stdin_with_a_dash() {
    let key = one_key("acme");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyhaven"))
        .args(["inspect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{key}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("checksum: valid")
    );
}

/// Runs `keyhaven` with `input` on standard input (not a terminal).
fn keyhaven_with_input(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyhaven"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused before it reads (a usage error) may exit first:
    // its closed standard input is then not this test's failure.
    match child.stdin.take().unwrap().write_all(input.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    child.wait_with_output().unwrap()
}

#[test]
fn operators_are_created_listed_reset_and_deleted_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let create = |email: &str, role: &str, password: &str| {
        keyhaven_with_input(
            &[
                "operator",
                "create",
                "--data-dir",
                data,
                "--email",
                email,
                "--role",
                role,
            ],
            &format!("{password}\n"),
        )
    };
    let o = create("Ann@Example.com", "admin", "correct horse battery");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Created operator ann@example.com (admin)"));
    let o = create("vic@example.com", "viewer", "another long password");
    assert!(o.status.success(), "{}", stderr(&o));

    // Refusals: a clear message, a non-zero exit, nothing written.
    for (email, role, password, message) in [
        (
            "ann@example.com",
            "admin",
            "yet another password",
            "already signs in with this email",
        ),
        (
            "bob@example.com",
            "admin",
            "short",
            "at least 12 characters",
        ),
        (
            "not an email",
            "admin",
            "long enough password",
            "must look like name@example.com",
        ),
        (
            "bob@example.com",
            "admin",
            "",
            "no password on standard input",
        ),
    ] {
        let o = create(email, role, password);
        assert!(!o.status.success(), "{email}");
        assert!(stderr(&o).contains(message), "{email}: {}", stderr(&o));
        assert!(!stderr(&o).contains(password) || password.is_empty() || password == "short");
    }
    let o = create("bob@example.com", "owner", "long enough password");
    assert!(!o.status.success(), "unknown role");

    let o = keyhaven(&["operator", "list", "--data-dir", data]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("ann@example.com") && out.contains("admin"));
    assert!(out.contains("vic@example.com") && out.contains("viewer"));
    assert!(!out.contains("bob@example.com"));
    assert!(!out.contains("$argon2"), "never the hash");

    let o = keyhaven_with_input(
        &[
            "operator",
            "reset-password",
            "--data-dir",
            data,
            "--email",
            "vic@example.com",
        ],
        "a brand new password\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = keyhaven(&[
        "operator",
        "delete",
        "--data-dir",
        data,
        "--email",
        "VIC@example.com",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = keyhaven(&[
        "operator",
        "delete",
        "--data-dir",
        data,
        "--email",
        "vic@example.com",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no operator has the email address"));
    let o = keyhaven(&["operator", "list", "--data-dir", data]);
    assert!(!stdout(&o).contains("vic@example.com"));
}

#[test]
fn root_keys_are_listed_rotated_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let o = keyhaven(&[
        "root-key",
        "create",
        "--data-dir",
        data,
        "--scopes",
        "keys:verify",
        "--name",
        "ci",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = stdout(&o).lines().last().unwrap().to_owned();
    let id = parse(&key).unwrap().key_id().to_owned();

    let o = keyhaven(&["root-key", "list", "--data-dir", data]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = stdout(&o);
    assert!(
        listed.contains(&id) && listed.contains("active") && listed.contains("keys:verify"),
        "{listed}"
    );
    assert!(!listed.contains(&key), "never the secret");

    let o = keyhaven(&[
        "root-key",
        "rotate",
        "--data-dir",
        data,
        &id,
        "--grace-seconds",
        "60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let successor = stdout(&o).lines().last().unwrap().to_owned();
    assert!(successor.starts_with("kh_root_") && successor != key);
    let o = keyhaven(&["root-key", "list", "--data-dir", data]);
    assert!(stdout(&o).contains("rotating"), "{}", stdout(&o));

    let new_id = parse(&successor).unwrap().key_id().to_owned();
    let o = keyhaven(&[
        "root-key",
        "revoke",
        "--data-dir",
        data,
        &new_id,
        "--reason",
        "test",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = keyhaven(&["root-key", "list", "--data-dir", data]);
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with(&new_id))
        .unwrap()
        .to_owned();
    assert!(line.contains("revoked"), "{line}");

    let o = keyhaven(&["root-key", "revoke", "--data-dir", data, "Abcdefghijkm"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no root key has that id"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreachable_postgres_is_named_with_its_cause_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_keyhaven"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args([
            "--database-url",
            &format!("postgres://keyhaven:hunter2@127.0.0.1:{port}/keyhaven"),
        ])
        .env_remove("KEYHAVEN_DATABASE_URL")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "the cause: {err}");
    assert!(err.contains("trying again"), "the retries are said: {err}");
    assert!(!err.contains("hunter2"), "never the password: {err}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "gave up after {took:?}"
    );
}

#[test]
fn inspect_json_gives_the_parts_and_the_failed_check_but_never_the_secret() {
    let key = one_key("acme_live");
    let parsed = parse(&key).unwrap();
    let o = keyhaven(&["inspect", "--json", &key]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["well_formed"], true);
    assert_eq!(v["prefix"], "acme_live");
    assert_eq!(v["key_id"], parsed.key_id());
    assert_eq!(v["secret_length"], parsed.secret().len());
    assert_eq!(v["checksum"], "valid");
    assert_eq!(v["display"], parsed.display_form());
    assert!(v["error"].is_null());
    assert!(!stdout(&o).contains(parsed.secret().expose_secret()));

    let mut typo = key.clone().into_bytes();
    typo[25] = if typo[25] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let o = keyhaven(&["inspect", "--json", &typo]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["well_formed"], false);
    assert_eq!(v["checksum"], "invalid");
    assert_eq!(
        v["key_id"],
        parsed.key_id(),
        "the key id helps find the typo"
    );
    assert_eq!(v["error"]["check"], "checksum");
    assert!(!stdout(&o).contains(&typo[18..48]));

    let o = keyhaven(&["inspect", "--json", "acme_live_short"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["error"]["check"], "length");
    assert!(v["key_id"].is_null() && v["checksum"].is_null());
}

/// The published vectors come from an independent implementation (docs/test-vectors.py):
/// `keyhaven hash` must print each one's verifier.
#[test]
fn hash_prints_the_verifier_of_every_published_test_vector() {
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/test-vectors.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for v in vectors["keys"].as_array().unwrap() {
        let pepper = dir.path().join(format!("pepper-{checked}"));
        std::fs::write(
            &pepper,
            format!(
                "{}:{}\n",
                v["pepper_version"],
                v["pepper_hex"].as_str().unwrap()
            ),
        )
        .unwrap();
        let key = v["key"].as_str().unwrap();
        let o = keyhaven(&["hash", "--pepper-file", pepper.to_str().unwrap(), key]);
        assert_eq!(o.status.code(), Some(0), "{key}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains(&format!(
                "verifier:        {}\n",
                v["verifier_hex"].as_str().unwrap()
            )),
            "{key}: {out}"
        );
        assert!(out.contains(&format!(
            "key id:          {}\n",
            v["key_id"].as_str().unwrap()
        )));
        assert!(
            !out.contains(v["secret"].as_str().unwrap()),
            "secret printed"
        );
        assert!(
            !out.contains(v["pepper_hex"].as_str().unwrap()),
            "pepper printed"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} vectors");
}

#[test]
fn hash_refuses_bad_input_with_a_message_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let pepper = dir.path().join("pepper");
    std::fs::write(
        &pepper,
        "1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    )
    .unwrap();
    let pepper = pepper.to_str().unwrap();
    let key = one_key("acme");
    let garbled = dir.path().join("garbled");
    std::fs::write(&garbled, "1:not-hex\n").unwrap();
    let missing = dir.path().join("missing");
    for (args, needle) in [
        (
            vec!["hash", "--pepper-file", missing.to_str().unwrap(), &key],
            "cannot read the pepper file",
        ),
        (
            vec!["hash", "--pepper-file", garbled.to_str().unwrap(), &key],
            "invalid pepper file",
        ),
        (
            vec![
                "hash",
                "--pepper-file",
                pepper,
                "--pepper-version",
                "2",
                &key,
            ],
            "no version 2",
        ),
        (
            vec!["hash", "--pepper-file", pepper, "acme_live_short"],
            "length check failed",
        ),
        (vec!["hash", &key], "--pepper-file"),
    ] {
        let o = keyhaven(&args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains(&key[15..40]), "secret in the error");
    }
}
