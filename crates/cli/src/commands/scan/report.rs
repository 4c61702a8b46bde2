//! `--report URL --root-key-file F`: sends the keys found to a Keyhaven server,
//! `POST URL/v1/leaks/report`, one request per location (split past 1,000 keys), and
//! says what the server did with them. The root key and the keys travel only in the
//! request; neither is ever printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};

use super::Finding;

/// Most keys one request may carry (the endpoint's limit).
const MAX_KEYS_PER_REQUEST: usize = 1000;
/// What the server records as the source of the report.
const SOURCE: &str = "keyhaven-scan";
/// Longest location the server stores (`url`, in characters).
const MAX_LOCATION_CHARS: usize = 2000;

#[derive(Debug)]
pub struct Reporter {
    endpoint: reqwest::Url,
    root_key: SecretString,
}

#[derive(serde::Deserialize)]
struct Answer {
    results: Vec<Verdict>,
}

#[derive(serde::Deserialize)]
struct Verdict {
    label: String,
    action: Option<String>,
}

#[derive(serde::Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

impl Reporter {
    /// Checks the URL and reads the root key, before anything is scanned.
    pub fn new(url: &str, root_key_file: &Path) -> anyhow::Result<Self> {
        let base = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .with_context(|| format!("--report {url}: not an http:// or https:// URL"))?;
        let endpoint = reqwest::Url::parse(&format!(
            "{}/v1/leaks/report",
            base.as_str().trim_end_matches('/')
        ))
        .with_context(|| format!("--report {url}: not a usable base URL"))?;
        let text =
            zeroize::Zeroizing::new(std::fs::read_to_string(root_key_file).with_context(|| {
                format!("cannot read the root key file {}", root_key_file.display())
            })?);
        let key = text.trim();
        if key.is_empty() {
            anyhow::bail!("the root key file {} is empty", root_key_file.display());
        }
        Ok(Self {
            endpoint,
            root_key: SecretString::from(key.to_owned()),
        })
    }

    /// Sends every finding, grouped by location, and prints what the server did.
    pub fn send(&self, findings: &[Finding]) -> anyhow::Result<()> {
        if findings.is_empty() {
            return Ok(());
        }
        let mut by_location: BTreeMap<String, Vec<&SecretString>> = BTreeMap::new();
        for f in findings {
            let keys = by_location
                .entry(for_server(&f.place.location()))
                .or_default();
            if !keys
                .iter()
                .any(|k| k.expose_secret() == f.key.expose_secret())
            {
                keys.push(&f.key);
            }
        }
        // reqwest is built without a default crypto provider (see the webhook client); a
        // provider installed already is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tally = crate::setup::block_on(async {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?;
            let mut tally = Tally::default();
            for (location, keys) in &by_location {
                for batch in keys.chunks(MAX_KEYS_PER_REQUEST) {
                    self.post(&client, location, batch, &mut tally).await?;
                }
            }
            anyhow::Ok(tally)
        })?;
        eprintln!("{}", tally.line(&self.endpoint));
        Ok(())
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        location: &str,
        keys: &[&SecretString],
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "keys": keys.iter().map(|k| k.expose_secret()).collect::<Vec<_>>(),
            "source": SOURCE,
            "url": location,
        });
        let endpoint = &self.endpoint;
        let answer = client
            .post(endpoint.clone())
            .bearer_auth(self.root_key.expose_secret())
            .json(&body)
            .send()
            .await
            // reqwest's error names the URL, never the body or headers.
            .with_context(|| format!("no answer from {endpoint}"))?;
        let status = answer.status();
        let text = answer
            .text()
            .await
            .with_context(|| format!("reading the answer of {endpoint}"))?;
        if !status.is_success() {
            let problem = serde_json::from_str::<Problem>(&text).ok();
            let detail = problem
                .and_then(|p| p.detail.or(p.title))
                .unwrap_or_else(|| text.chars().take(300).collect());
            anyhow::bail!("{endpoint} answered {status}: {detail}");
        }
        let answer: Answer = serde_json::from_str(&text)
            .with_context(|| format!("{endpoint} answered {status} with an unexpected body"))?;
        if answer.results.len() != keys.len() {
            anyhow::bail!(
                "{endpoint} answered {} results for {} keys",
                answer.results.len(),
                keys.len()
            );
        }
        tally.requests += 1;
        for verdict in answer.results {
            tally.add(&verdict);
        }
        Ok(())
    }
}

/// A location as the server accepts it: no control characters (a file name may hold
/// any), at most 2,000 characters.
fn for_server(location: &str) -> String {
    location
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_LOCATION_CHARS)
        .collect()
}

/// What the server said about the keys sent.
#[derive(Default)]
struct Tally {
    requests: usize,
    keys: usize,
    true_positives: usize,
    false_positives: usize,
    /// How many true positives got each action (`revoked`, `disabled`, ...).
    actions: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, verdict: &Verdict) {
        self.keys += 1;
        if verdict.label == "true_positive" {
            self.true_positives += 1;
            let action = verdict.action.clone().unwrap_or_else(|| "no action".into());
            *self.actions.entry(action).or_default() += 1;
        } else {
            self.false_positives += 1;
        }
    }

    fn line(&self, endpoint: &reqwest::Url) -> String {
        let mut line = format!(
            "reported {} keys to {endpoint} in {} requests: {} true positives",
            self.keys, self.requests, self.true_positives
        );
        if !self.actions.is_empty() {
            let actions: Vec<String> = self
                .actions
                .iter()
                .map(|(action, n)| format!("{n} {}", action.replace('_', " ")))
                .collect();
            line.push_str(&format!(" ({})", actions.join(", ")));
        }
        line.push_str(&format!(", {} false positives", self.false_positives));
        line
    }
}
