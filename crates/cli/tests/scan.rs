//! `keyhaven scan` as a user runs it: the real binary over real files and a real git
//! repository built with `git fast-import`, keys planted in the working tree, only in
//! history, in deleted files, in lines modified away, on an unmerged branch and behind
//! tags, among base58 noise full of look-alikes whose checksum is wrong.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers may fail loudly

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use keyhaven_core::{Prefix, generate, parse};
use secrecy::ExposeSecret;

fn keyhaven(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyhaven"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn git(dir: &Path, args: &[&str]) -> Output {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    o
}

/// A key and where it was planted.
#[derive(Debug, Clone)]
struct Planted {
    key: String,
    key_id: String,
    secret: String,
    path: String,
    line: u64,
    column: u64,
    /// The fast-import mark of the commit that introduced it.
    mark: usize,
    /// Whether the key is still in the last commit of `main`.
    in_final_tree: bool,
}

fn new_key(prefix: &str) -> (String, String, String) {
    let k = generate(&Prefix::new(prefix).unwrap()).unwrap();
    let key = k.key().expose_secret().to_owned();
    let parsed = parse(&key).unwrap();
    let secret = parsed.secret().expose_secret().to_owned();
    (key.clone(), parsed.key_id().to_owned(), secret)
}

/// xorshift64*: deterministic noise, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn base58(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
        (0..len)
            .map(|_| char::from(ALPHABET[self.below(58)]))
            .collect()
    }
}

/// Random base58 text with separators, strings shaped exactly like keys (random
/// checksum), and real keys with one character changed (so the checksum fails).
struct Noise {
    rng: Rng,
    look_alikes: Vec<String>,
}

impl Noise {
    fn new(seed: u64) -> Self {
        let look_alikes = (0..200)
            .map(|i| {
                let (key, _, _) = new_key(["acme_live", "acme_test", "x"][i % 3]);
                let mut bytes = key.into_bytes();
                // One changed character anywhere in the key id, secret or checksum.
                let at = bytes.len() - 1 - (i % 40);
                bytes[at] = if bytes[at] == b'2' { b'3' } else { b'2' };
                String::from_utf8(bytes).unwrap()
            })
            .collect();
        Self {
            rng: Rng(seed),
            look_alikes,
        }
    }

    /// About `len` bytes of noise, ending with a newline.
    fn text(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len + 100);
        while out.len() < len {
            match self.rng.below(20) {
                0 => {
                    let i = self.rng.below(self.look_alikes.len());
                    out.push_str(&self.look_alikes[i]);
                }
                1 => {
                    let id = self.rng.base58(12);
                    let rest = self.rng.base58(36);
                    write!(out, "acme_live_{id}_{rest}").unwrap();
                }
                n => {
                    let word = self.rng.base58(1 + n * 2);
                    out.push_str(&word);
                }
            }
            out.push(match self.rng.below(8) {
                0 => '\n',
                1 => '_',
                2 => '=',
                _ => ' ',
            });
        }
        out.push('\n');
        out
    }
}

/// The shape of a generated repository.
struct Shape {
    files: usize,
    commits: usize,
    /// Noise files rewritten by each commit after the first.
    changes_per_commit: usize,
    noise_per_file: usize,
}

/// A repository in `dir/repo` whose `main` has `shape.commits` commits, and the 50 keys
/// planted in it: 15 still in the last commit, 10 in lines modified away, 10 in files
/// deleted later, 5 in lines deleted later, 5 on an unmerged branch and 5 in commits
/// reachable only from tags.
fn build_repository(dir: &Path, shape: &Shape) -> Vec<Planted> {
    assert!(shape.commits >= 60);
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let mut noise = Noise::new(0x5eed_0000_0000_0001 ^ shape.files as u64);
    let mut stream = Vec::with_capacity(shape.files * (shape.noise_per_file + 80));
    let mut planted = Vec::new();

    let path_of = |i: usize| format!("src/d{:03}/f{i:05}.txt", i / 100);
    // What each planted key's file holds, and where the key sits in it.
    let plant = |kind: &str, j: usize, mark: usize, in_final_tree: bool, noise: &mut Noise| {
        let prefix = if j.is_multiple_of(5) {
            "acme_test"
        } else {
            "acme_live"
        };
        let (key, key_id, secret) = new_key(prefix);
        let glue = ["", "my_config_", "\"", "export TOKEN="][j % 4];
        let path = format!("{kind}/k{j:02}.env");
        let before = noise.text(120);
        let content = format!(
            "# {kind} {j}\n{before}API_KEY = {glue}{key}\n{}",
            noise.text(80)
        );
        let at = content.find(&key).unwrap();
        let line = content[..at].matches('\n').count() as u64 + 1;
        let line_start = content[..at].rfind('\n').map_or(0, |i| i + 1);
        let column = content[line_start..at].chars().count() as u64 + 1;
        let p = Planted {
            key,
            key_id,
            secret,
            path,
            line,
            column,
            mark,
            in_final_tree,
        };
        (p, content)
    };

    // Main: commit 1 holds every noise file; each later commit rewrites a few of them,
    // and plants or removes keys on a schedule.
    let mut removals: BTreeMap<usize, Vec<(String, Option<String>)>> = BTreeMap::new();
    let mut plants: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    let kinds = [
        ("final", 15, None),
        ("modified", 10, Some(5)),
        ("deleted_file", 10, Some(7)),
        ("deleted_line", 5, Some(3)),
    ];
    let mut j = 0;
    let span = shape.commits - 12;
    for (kind, count, removed_after) in kinds {
        for _ in 0..count {
            let mark = 2 + j * span / 40;
            let (p, content) = plant(kind, j, mark, removed_after.is_none(), &mut noise);
            if let Some(after) = removed_after {
                let change = match kind {
                    "modified" => Some(content.replace(&p.key, "REDACTED")),
                    "deleted_line" => Some(
                        content
                            .lines()
                            .filter(|l| !l.contains(&p.key))
                            .map(|l| format!("{l}\n"))
                            .collect(),
                    ),
                    _ => None,
                };
                removals
                    .entry(mark + after)
                    .or_default()
                    .push((p.path.clone(), change));
            }
            plants
                .entry(mark)
                .or_default()
                .push((p.path.clone(), content));
            planted.push(p);
            j += 1;
        }
    }
    let mut rng = Rng(7);
    for mark in 1..=shape.commits {
        let mut data = Vec::new();
        if mark == 1 {
            for i in 0..shape.files {
                data.push((path_of(i), Some(noise.text(shape.noise_per_file))));
            }
        } else {
            for _ in 0..shape.changes_per_commit {
                let i = rng.below(shape.files);
                data.push((path_of(i), Some(noise.text(shape.noise_per_file / 2))));
            }
        }
        for (path, content) in plants.remove(&mark).unwrap_or_default() {
            data.push((path, Some(content)));
        }
        for (path, change) in removals.remove(&mark).unwrap_or_default() {
            data.push((path, change));
        }
        commit_header(&mut stream, "refs/heads/main", mark, None);
        for (path, content) in data {
            file_op(&mut stream, &path, content.as_deref());
        }
    }
    assert!(removals.is_empty() && plants.is_empty());

    // An unmerged branch from commit 30, and commits reachable only from tags.
    let mut mark = shape.commits;
    for (i, reference) in [
        "refs/heads/experiment",
        "refs/heads/experiment",
        "refs/heads/experiment",
        "refs/heads/experiment",
        "refs/heads/experiment",
        "refs/tags/light",
        "refs/tags/light",
        "refs/tags/light",
        "refs/heads/to-be-deleted",
        "refs/heads/to-be-deleted",
    ]
    .into_iter()
    .enumerate()
    {
        mark += 1;
        let from = match i {
            0 => Some(30),
            5 => Some(40),
            8 => Some(50),
            _ => None,
        };
        let kind = if reference.starts_with("refs/heads/e") {
            "branch"
        } else {
            "tag"
        };
        let (p, content) = plant(kind, 40 + i, mark, false, &mut noise);
        commit_header(&mut stream, reference, mark, from);
        file_op(&mut stream, &p.path, Some(&content));
        planted.push(p);
    }
    // An annotated tag on the last commit of a branch that is then deleted.
    write!(
        stream,
        "tag annotated\nfrom :{mark}\ntagger T <t@example.com> 1700900000 +0000\ndata 4\nleak\n"
    )
    .unwrap();

    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--export-marks=../marks"])
        .current_dir(&repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success());
    git(&repo, &["update-ref", "-d", "refs/heads/to-be-deleted"]);
    git(&repo, &["reset", "-q", "--hard", "main"]);
    assert_eq!(planted.len(), 50);
    planted
}

fn commit_header(stream: &mut Vec<u8>, reference: &str, mark: usize, from: Option<usize>) {
    let time = 1_700_000_000 + mark * 60;
    let message = format!("commit {mark}");
    write!(
        stream,
        "commit {reference}\nmark :{mark}\ncommitter T <t@example.com> {time} +0000\ndata {}\n{message}\n",
        message.len()
    )
    .unwrap();
    if let Some(from) = from {
        writeln!(stream, "from :{from}").unwrap();
    }
}

fn file_op(stream: &mut Vec<u8>, path: &str, content: Option<&str>) {
    match content {
        Some(content) => write!(
            stream,
            "M 100644 inline {path}\ndata {}\n{content}\n",
            content.len()
        )
        .unwrap(),
        None => writeln!(stream, "D {path}").unwrap(),
    }
}

/// Mark → commit id, from fast-import's exported marks.
fn marks(dir: &Path) -> HashMap<usize, String> {
    std::fs::read_to_string(dir.join("marks"))
        .unwrap()
        .lines()
        .map(|l| {
            let (mark, id) = l.split_once(' ').unwrap();
            (mark[1..].parse().unwrap(), id.to_owned())
        })
        .collect()
}

fn findings(o: &Output) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&o.stderr)))
        .as_array()
        .unwrap()
        .clone()
}

fn key_ids(list: &[serde_json::Value]) -> BTreeSet<String> {
    list.iter()
        .map(|f| f["key_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Neither stream of `o` holds any planted key's secret.
fn assert_no_secret(o: &Output, planted: &[Planted]) {
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    for p in planted {
        assert!(
            !out.contains(&p.secret) && !err.contains(&p.secret),
            "{}",
            p.path
        );
    }
}

#[test]
fn history_scan_finds_every_planted_key_and_the_tree_scan_only_the_current_ones() {
    let dir = tempfile::tempdir().unwrap();
    let shape = Shape {
        files: 20_000,
        commits: 500,
        changes_per_commit: 20,
        noise_per_file: 500,
    };
    let planted = build_repository(dir.path(), &shape);
    let repo = dir.path().join("repo");
    let marks = marks(dir.path());

    // History: all 50, each at the commit that introduced it, its path and line.
    let o = keyhaven(&repo, &["scan", "--git", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_no_secret(&o, &planted);
    let found = findings(&o);
    let expected: BTreeSet<String> = planted.iter().map(|p| p.key_id.clone()).collect();
    assert_eq!(key_ids(&found), expected);
    assert_eq!(found.len(), 50, "each key is in exactly one blob");
    for p in &planted {
        let f = found
            .iter()
            .find(|f| f["key_id"] == p.key_id.as_str())
            .unwrap();
        assert_eq!(f["path"], p.path.as_str());
        assert_eq!(f["line"], p.line);
        assert_eq!(f["column"], p.column);
        assert_eq!(f["commit"], marks[&p.mark].as_str(), "{}", p.path);
        assert!(f["display"].as_str().unwrap().starts_with(&format!(
            "{}_{}_",
            f["prefix"].as_str().unwrap(),
            p.key_id
        )));
    }
    let summary = text(&o.stderr);
    assert!(summary.contains("50 keys found in 50 blobs"), "{summary}");

    // The working tree: only what the last commit of main holds, plus an untracked
    // hidden file; a .gitignore'd file is skipped.
    let (dotenv, dotenv_id, dotenv_secret) = new_key("acme_live");
    let (ignored, ignored_id, ignored_secret) = new_key("acme_live");
    std::fs::write(repo.join(".env"), format!("KEY={dotenv}\n")).unwrap();
    std::fs::write(repo.join(".gitignore"), "*.local\n").unwrap();
    std::fs::write(repo.join("secrets.local"), format!("KEY={ignored}\n")).unwrap();
    let o = keyhaven(&repo, &["scan", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_no_secret(&o, &planted);
    for secret in [&dotenv_secret, &ignored_secret] {
        assert!(!text(&o.stdout).contains(secret.as_str()));
    }
    let found = findings(&o);
    let mut expected: BTreeSet<String> = planted
        .iter()
        .filter(|p| p.in_final_tree)
        .map(|p| p.key_id.clone())
        .collect();
    assert_eq!(expected.len(), 15);
    expected.insert(dotenv_id);
    assert_eq!(key_ids(&found), expected);
    assert!(!key_ids(&found).contains(&ignored_id));
    for p in planted.iter().filter(|p| p.in_final_tree) {
        let f = found
            .iter()
            .find(|f| f["key_id"] == p.key_id.as_str())
            .unwrap();
        assert_eq!(f["path"], p.path.as_str());
        assert_eq!(f["line"], p.line);
        assert_eq!(f["column"], p.column);
        assert!(f.get("commit").is_none());
    }

    // --prefix keeps only the keys with that prefix.
    let o = keyhaven(
        &repo,
        &["scan", "--git", "--prefix", "acme_test", "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let expected: BTreeSet<String> = planted
        .iter()
        .filter(|p| p.key.starts_with("acme_test_"))
        .map(|p| p.key_id.clone())
        .collect();
    assert_eq!(key_ids(&findings(&o)), expected);

    // Text, the default: one line per finding, `commit:path:line:column: display`.
    let o = keyhaven(&repo, &["scan", "--git"]);
    assert_eq!(o.status.code(), Some(1));
    assert_no_secret(&o, &planted);
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 50);
    let p = &planted[0];
    let line = out.lines().find(|l| l.contains(&p.key_id)).unwrap();
    assert!(
        line.starts_with(&format!(
            "{}:{}:{}:{}: ",
            &marks[&p.mark][..12],
            p.path,
            p.line,
            p.column
        )),
        "{line}"
    );

    // SARIF 2.1.0 with one result per finding.
    let o = keyhaven(&repo, &["scan", "--git", "--format", "sarif"]);
    assert_eq!(o.status.code(), Some(1));
    assert_no_secret(&o, &planted);
    let sarif: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "keyhaven");
    assert_eq!(run["tool"]["driver"]["rules"][0]["id"], "keyhaven/api-key");
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    for r in results {
        assert_eq!(r["ruleId"], "keyhaven/api-key");
        let location = &r["locations"][0]["physicalLocation"];
        let uri = location["artifactLocation"]["uri"].as_str().unwrap();
        let p = planted.iter().find(|p| p.path == uri).unwrap();
        assert_eq!(location["region"]["startLine"], p.line);
        assert_eq!(location["region"]["startColumn"], p.column);
        assert!(r["message"]["text"].as_str().unwrap().contains(&p.key_id));
    }
}

#[test]
fn nothing_found_exits_0_and_look_alikes_are_not_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut noise = Noise::new(42);
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("n{i}.txt")), noise.text(20_000)).unwrap();
    }
    let o = keyhaven(dir.path(), &["scan"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "");
    assert!(text(&o.stderr).contains("0 keys found in 0 files; scanned 50 files"));
    let o = keyhaven(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(findings(&o).len(), 0);
    let o = keyhaven(dir.path(), &["scan", "--format", "sarif"]);
    let sarif: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 0);
}

#[test]
fn explicit_paths_binary_files_and_overlapping_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (key, key_id, secret) = new_key("acme_live");
    let (binary_key, _, _) = new_key("acme_live");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/a.py"),
        format!("x = 1\nKEY = '{key}'\n"),
    )
    .unwrap();
    let mut blob = vec![0u8, 1, 2];
    blob.extend_from_slice(binary_key.as_bytes());
    std::fs::write(dir.path().join("sub/image.bin"), blob).unwrap();

    // The same file through two paths is reported once.
    let o = keyhaven(dir.path(), &["scan", "sub", "sub/a.py", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let found = findings(&o);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["key_id"], key_id.as_str());
    assert_eq!(found[0]["line"], 2);
    assert_eq!(found[0]["column"], 8);
    assert!(
        text(&o.stderr).contains("skipped 1 binary"),
        "{}",
        text(&o.stderr)
    );
    assert!(!text(&o.stdout).contains(&secret) && !text(&o.stderr).contains(&secret));

    let o = keyhaven(dir.path(), &["scan", "sub/a.py"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).starts_with("sub/a.py:2:8: acme_live_"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "nothing\n").unwrap();

    let o = keyhaven(dir.path(), &["scan", "missing-dir"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("missing-dir: no such file or directory"));

    let o = keyhaven(dir.path(), &["scan", "--git"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("not a git repository"),
        "{}",
        text(&o.stderr)
    );

    let o = keyhaven(
        dir.path(),
        &[
            "scan",
            "--report",
            "http://127.0.0.1:9",
            "--root-key-file",
            "no-such-file",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("cannot read the root key file no-such-file"));

    std::fs::write(dir.path().join("root-key"), "kh_root_x\n").unwrap();
    let o = keyhaven(
        dir.path(),
        &[
            "scan",
            "--report",
            "ftp://example",
            "--root-key-file",
            "root-key",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("not an http:// or https:// URL"));

    // --report and --root-key-file only together (a usage error, also 2).
    let o = keyhaven(dir.path(), &["scan", "--report", "http://127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--root-key-file"));

    let o = keyhaven(dir.path(), &["scan", "--prefix", "Bad-Prefix"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn help_says_what_is_scanned_and_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let o = keyhaven(dir.path(), &["scan", "--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    for needle in [
        ".gitignore",
        "binary",
        "--max-file-size",
        "Exit status",
        "history",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
