//! The findings as text, JSON or SARIF 2.1.0 on stdout, and the summary on stderr.
//! Every format shows a key's display form only, never its secret.

use std::io::{self, BufWriter, Write as _};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Finding, Format, Stats};

/// The one SARIF rule every finding belongs to.
const RULE_ID: &str = "keyhaven/api-key";

/// Writes the findings on stdout. A reader that goes away (`| head`) ends the output
/// early without changing the exit status.
pub fn write(format: Format, findings: &[Finding]) -> io::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    match format {
        Format::Text => {
            for f in findings {
                let p = &f.place;
                if let Some(commit) = &p.commit {
                    write!(out, "{}:", commit.get(..12).unwrap_or(commit))?;
                }
                writeln!(out, "{}:{}:{}: {}", p.path, p.line, p.column, f.display)?;
            }
        }
        Format::Json => {
            let list: Vec<Value> = findings.iter().map(json_finding).collect();
            serde_json::to_writer_pretty(&mut out, &list).map_err(io::Error::from)?;
            writeln!(out)?;
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut out, &sarif(findings)).map_err(io::Error::from)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn json_finding(f: &Finding) -> Value {
    let mut v = json!({
        "path": f.place.path,
        "line": f.place.line,
        "column": f.place.column,
        "key_id": f.key_id,
        "prefix": f.prefix,
        "display": f.display,
    });
    if let (Some(commit), Some(map)) = (&f.place.commit, v.as_object_mut()) {
        map.insert("commit".into(), Value::from(commit.as_str()));
    }
    v
}

fn sarif(findings: &[Finding]) -> Value {
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let p = &f.place;
            let text = match &p.commit {
                Some(commit) => format!(
                    "Keyhaven API key {} committed in {commit}. Revoke it and remove it from the history.",
                    f.display
                ),
                None => format!(
                    "Keyhaven API key {}. Revoke it and remove it from the code.",
                    f.display
                ),
            };
            let mut result = json!({
                "ruleId": RULE_ID,
                "ruleIndex": 0,
                "level": "error",
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&p.path) },
                        "region": { "startLine": p.line, "startColumn": p.column },
                    }
                }],
                "partialFingerprints": { "keyhaven/keyId/v1": f.key_id },
            });
            if let (Some(commit), Some(map)) = (&p.commit, result.as_object_mut()) {
                map.insert("properties".into(), json!({ "commit": commit }));
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "keyhaven",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": [{
                    "id": RULE_ID,
                    "name": "KeyhavenApiKey",
                    "shortDescription": { "text": "Keyhaven API key in source" },
                    "fullDescription": { "text": "A well-formed Keyhaven API key (its checksum holds) is present. Anyone who reads it can use it." },
                    "help": { "text": "Revoke the key (keyhaven scan --report sends it to your server), issue a new one, and load it from the environment or a secret store instead." },
                    "defaultConfiguration": { "level": "error" },
                }],
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

/// A relative path as a URI reference (`file://` for an absolute one): `/` kept,
/// everything outside RFC 3986's unreserved characters percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One line on stderr: how many keys, where, and what was looked at.
pub fn summary(git: bool, findings: &[Finding], stats: &Stats, elapsed: Duration) {
    let mut places: Vec<(&Option<String>, &str)> = findings
        .iter()
        .map(|f| (&f.place.commit, f.place.path.as_str()))
        .collect();
    places.sort_unstable();
    places.dedup();
    let (unit, units) = if git {
        ("blob", "blobs")
    } else {
        ("file", "files")
    };
    let plural = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    let mut line = format!(
        "{} {} found in {} {}; scanned {} {units} ({:.1} MB)",
        findings.len(),
        plural(findings.len(), "key", "keys"),
        places.len(),
        plural(places.len(), unit, units),
        stats.files,
        stats.bytes as f64 / 1e6,
    );
    if git {
        line.push_str(&format!(" in {} commits", stats.commits));
    }
    line.push_str(&format!(" in {:.1} s", elapsed.as_secs_f64()));
    let skipped = [
        (stats.binary, "binary"),
        (stats.too_large, "too large"),
        (stats.unreadable, "unreadable"),
    ];
    let skipped: Vec<String> = skipped
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
    if !skipped.is_empty() {
        line.push_str(&format!("; skipped {}", skipped.join(", ")));
    }
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri("src/a b/é.py"), "src/a%20b/%C3%A9.py");
        assert_eq!(uri("/abs/x#1"), "file:///abs/x%231");
    }
}
