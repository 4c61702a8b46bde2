//! The README's shell examples, pasted as a new operator would: the quickstart, the
//! verify-only root key, then the rate-limit example in the same shell, with `keyhaven`
//! found on the PATH.

use std::path::Path;
use std::process::Command;

use crate::helpers;

/// The `sh` blocks of the README section that starts at `heading`.
fn sh_blocks(readme: &str, heading: &str) -> Vec<String> {
    blocks(readme, heading, &["sh"])
}

/// The code blocks in one of `languages` of the README section that starts at `heading`
/// (up to the next heading of the same or a higher level; `#` lines inside code blocks
/// are comments, not headings).
fn blocks(readme: &str, heading: &str, languages: &[&str]) -> Vec<String> {
    let level = heading.split(' ').next().unwrap().len();
    let mut lines = readme.lines().skip_while(|l| *l != heading);
    assert_eq!(lines.next(), Some(heading), "the README has no {heading:?}");
    // The block being read: its language and text.
    let (mut blocks, mut block): (Vec<String>, Option<(&str, String)>) = (Vec::new(), None);
    for line in lines {
        match &mut block {
            Some((language, text)) if line.starts_with("```") => {
                if languages.contains(language) {
                    blocks.push(std::mem::take(text));
                }
                block = None;
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None if line.starts_with("```") => block = Some((&line[3..], String::new())),
            None => {
                let hashes = line.chars().take_while(|c| *c == '#').count();
                if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                    break;
                }
            }
        }
    }
    blocks
}

/// The proxy snippets in the README are docs/gateway.md's, whose nginx one the suite runs
/// against a real nginx: a copy that drifted would go untested.
#[test]
fn the_readme_proxy_snippets_are_the_gateway_guides() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let guide = std::fs::read_to_string(format!("{root}/docs/gateway.md")).unwrap();
    let heading = "## Put Keyhaven in front of your API";
    let snippets = blocks(&readme, heading, &["nginx", "yaml", "caddy"]);
    assert_eq!(snippets.len(), 4, "nginx, Traefik, Caddy and Envoy");
    for snippet in snippets {
        assert!(
            guide.contains(&snippet),
            "not in docs/gateway.md as it is:\n{snippet}"
        );
    }
}

#[tokio::test]
async fn the_readme_examples_work_as_pasted_one_after_another() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    assert!(
        readme.contains("cargo install --path crates/cli"),
        "the README says how to put keyhaven on the PATH"
    );
    let quickstart = sh_blocks(&readme, "## Five minutes with Keyhaven");
    let limits = sh_blocks(&readme, "### Rate limits and quotas");
    assert_eq!(quickstart.len(), 2, "{quickstart:?}");
    assert_eq!(limits.len(), 1, "{limits:?}");

    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    // The default data directory, as the README assumes: ./keyhaven-data.
    let data = dir.path().join("keyhaven-data");
    let server = helpers::spawn_process(&data, logs.path(), &[]).await;
    let root = server.first_root_key();

    let script = [quickstart.as_slice(), limits.as_slice()]
        .concat()
        .join("\n")
        .replace("KH=http://127.0.0.1:8080", &format!("KH={}", server.base))
        .lines()
        .map(|line| {
            if line.starts_with("ROOT_KEY=kh_root_...") {
                format!("ROOT_KEY={root}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(script.contains(&root), "the root key line was found");

    // The shell gets the test binary's directory first on its PATH, as
    // `cargo install` would put keyhaven in ~/.cargo/bin, and the same database.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_keyhaven")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let template = helpers::keyhaven(&data).await;
    let mut sh = Command::new("sh");
    for (name, value) in template.get_envs() {
        match value {
            Some(v) => sh.env(name, v),
            None => sh.env_remove(name),
        };
    }
    let out = sh
        .args(["-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.trim().is_empty(), "no errors: {stderr}");

    let lines: Vec<&str> = stdout.lines().collect();
    let keyspace_id = lines[0];
    assert!(
        !keyspace_id.is_empty() && !keyspace_id.contains('{'),
        "{stdout}"
    );
    assert!(lines[1].starts_with("acme_live_"), "{stdout}");
    let valid = stdout.find(r#""code":"VALID""#).expect(&stdout);
    let revoked = stdout.find(r#""code":"REVOKED""#).expect(&stdout);
    assert!(valid < revoked, "{stdout}");
    assert!(
        stdout.contains("kh_root_"),
        "keyhaven root-key create ran from the PATH: {stdout}"
    );
    for error in [
        "prefix_taken",
        "not_found",
        "invalid_request",
        "unauthorized",
    ] {
        assert!(!stdout.contains(error), "{error}: {stdout}");
    }
    let metered = lines
        .iter()
        .position(|l| l.contains("kh_root_"))
        .and_then(|i| lines.get(i + 1..))
        .and_then(|rest| {
            rest.iter()
                .find(|l| !l.trim().is_empty() && !l.contains(':'))
        })
        .expect(&stdout);
    assert_ne!(*metered, keyspace_id, "a keyspace of its own: {stdout}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).expect(&stdout);
    assert_eq!(last["keyspace_id"], *metered, "{last}");
    assert_eq!(last["quota"]["remaining"], 1000, "{last}");
}
