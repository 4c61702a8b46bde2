//! A statistical timing test of the verify path, dudect-style ("Dude, is my code constant
//! time?", Reparaz, Balasch and Verbauwhede, 2017): does the time a verification takes
//! depend on which of two classes of input it was given?
//!
//! Method. For each comparison, every measurement picks its class by a coin flip and an
//! input from that class's pool (256 keys, all with valid checksums, so they pass the
//! parser) at random, copies it into a fresh buffer (so both classes are read from the
//! same addresses), and times one call with `Instant`. The first measurements (20,000,
//! or a tenth of the comparison's time) are a warm-up: thrown away, their pooled
//! percentiles set the crops (keep only measurements below percentile 1 − 0.5^k,
//! k = 1…10, i.e. p50 … p99.9: every tenth of dudect's), which drop the interrupts and
//! preemptions of a shared machine. Welch's t is computed (running means and variances)
//! on all measurements and on each crop; the verdict is on the largest |t| among tests
//! with at least 1,000 measurements per class, as dudect's is: |t| < 4.5 no evidence of
//! a difference at this sample size, > 10 a difference, in between inconclusive. |t| <
//! 4.5 is not a proof: more samples find smaller effects. Each level also runs an A/A
//! control (two pools of the same kind): what |t| this machine produces with no
//! difference at all; read the other rows against it.
//!
//! Two levels, reported apart:
//! - **service**: `keyhaven_service::verify::verify`, the operation `POST
//!   /v1/keys/verify` calls (parse, record cache, MAC, policy, failed-verification
//!   limiter, usage), for a root-key actor from `verify::authenticate`, on a real SQLite
//!   store in a temp directory, cache warmed. The HTTP layer is left out: for NOT_FOUND
//!   it writes the same bytes whatever the input was.
//! - **core**: what `keyhaven-core` does with the presented string: `parse` then
//!   `PepperSet::verify` (HMAC of `key_id:secret`, constant-time compare).
//!
//! What must not leak is how much of the *secret* matched. The secret itself is never
//! compared: its HMAC is (two SHA-256 compressions whatever the content), in constant
//! time over all 32 bytes. The tests for that: a known key id with the first secret
//! character wrong vs the last one wrong (both levels), and, in core, the right secret
//! against a stored MAC that differs from its MAC only in the first byte vs only in the
//! last byte (the compare itself, with no hash in between to hide an early exit).
//!
//! Known key id + wrong secret vs unknown key id is a different question. The key id is
//! public (the lookup handle, shown in the display form on dashboards and in logs); a
//! difference there tells whether an id exists, nothing about any secret. In core an
//! unknown id runs the same MAC and compare, against an all-zero MAC; a long run still
//! detects a fraction of a nanosecond there, likely from finding the pepper differently
//! (by the stored version, or the newest). In the service the record cache keeps "no
//! such key" too (a negative cache), so a warm unknown id is one cache hit like a known
//! one; but a known id with a wrong secret then counts a WrongSecret use for its key
//! (`usage.rs`; with `usage_tracking` off most of the difference goes, the rest is
//! copying the key id for that count) and an unknown one does not. The cold comparison
//! (the id's cache entry dropped before each call, so both read the store) is what a
//! first probe of an id costs: a store read that finds a row, or none. Differences in
//! these rows are expected and are not secret leaks; ids are ~70 random bits, so only
//! ids one already holds can be probed.
//!
//! Changed from the defaults: the cache TTL is an hour (records do not expire mid-run;
//! the store read is measured on its own), and the failed-verification limiter allows
//! 10^9 failures per key a minute (it still runs on every failure; at the default 10 the
//! answers would turn RATE_LIMITED after ten, another path). Every answer is checked to
//! be NOT_FOUND.
//!
//! Run: `bench/timing.sh`, or `cargo bench -p keyhaven-server --bench verify_timing`.
//! `VERIFY_TIMING_SECONDS` (default 60) is split among the comparisons;
//! `VERIFY_TIMING_SAMPLES` caps the measurements per comparison.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use common::call;
use keyhaven_core::base58::ALPHABET;
use keyhaven_core::format::{MAX_KEY_LEN, SECRET_LEN, checksum};
use keyhaven_core::{PepperSet, Prefix, Verification, Verifier, VerifyCode, generate, parse};
use keyhaven_service::config::Config;
use keyhaven_service::verify::{self, VerifyRequest};
use keyhaven_service::{Actor, Service};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

const PREFIX: &str = "bench";
const KNOWN_KEYS: usize = 8;
const POOL: usize = 256;
/// Warm-up measurements per comparison (at most; see [`Sampler::record`]).
const PILOT: usize = 20_000;
/// The crops: keep measurements below percentile 1 - 0.5^k, k = 1..=CROPS.
const CROPS: usize = 10;
/// Fewest measurements per class for a test to count towards the verdict.
const ENOUGH: f64 = 1_000.0;
const NO_EVIDENCE: f64 = 4.5;
const LEAK: f64 = 10.0;

// ---- statistics ----

/// Running mean and variance of both classes (Welford), and Welch's t between them.
#[derive(Clone, Copy, Default)]
struct Welch {
    n: [f64; 2],
    mean: [f64; 2],
    m2: [f64; 2],
}

impl Welch {
    fn push(&mut self, class: usize, x: f64) {
        self.n[class] += 1.0;
        let d = x - self.mean[class];
        self.mean[class] += d / self.n[class];
        self.m2[class] += d * (x - self.mean[class]);
    }

    fn t(&self) -> f64 {
        if self.n[0] < 2.0 || self.n[1] < 2.0 {
            return 0.0;
        }
        let var = |c: usize| self.m2[c] / (self.n[c] - 1.0);
        let se = (var(0) / self.n[0] + var(1) / self.n[1]).sqrt();
        if se > 0.0 {
            (self.mean[0] - self.mean[1]) / se
        } else {
            0.0
        }
    }

    fn enough(&self) -> bool {
        self.n[0] >= ENOUGH && self.n[1] >= ENOUGH
    }
}

fn crop_percent(k: usize) -> f64 {
    100.0 * (1.0 - 0.5f64.powi(k as i32 + 1))
}

/// SplitMix64, for the class coin and the choice of inputs: nothing here is secret, and
/// it costs a few instructions per measurement.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One comparison's measurements: a warm-up that sets the crops, then Welch's t on all
/// measurements and on each crop. Decides when to stop (time or sample budget).
struct Sampler {
    rng: SplitMix,
    pilot: Vec<f64>,
    pilot_until: Instant,
    thresholds: [f64; CROPS],
    all: Welch,
    crops: [Welch; CROPS],
    deadline: Instant,
    max_samples: u64,
    measured: u64,
    calls: u64,
}

impl Sampler {
    fn new(seed: u64, budget: Duration, max_samples: u64) -> Self {
        let now = Instant::now();
        Self {
            rng: SplitMix(seed),
            pilot: Vec::with_capacity(PILOT),
            pilot_until: now + budget / 10,
            thresholds: [f64::INFINITY; CROPS],
            all: Welch::default(),
            crops: [Welch::default(); CROPS],
            deadline: now + budget,
            max_samples,
            measured: 0,
            calls: 0,
        }
    }

    /// The next measurement's class and input index, or `None` when the budget is spent.
    fn next(&mut self) -> Option<(usize, usize)> {
        self.calls += 1;
        let past = self.calls.is_multiple_of(64) && Instant::now() >= self.deadline;
        if past || self.measured >= self.max_samples {
            return None;
        }
        let r = self.rng.next();
        Some(((r & 1) as usize, (r >> 8) as usize % POOL))
    }

    /// Takes one measurement: into the warm-up until it has `PILOT` of them or a tenth
    /// of the time has passed (store reads are slow), then into the tests.
    fn record(&mut self, class: usize, elapsed: Duration) {
        let x = elapsed.as_nanos() as f64;
        if self.thresholds[0].is_infinite() {
            self.pilot.push(x);
            if self.pilot.len() >= PILOT || Instant::now() >= self.pilot_until {
                self.pilot.sort_by(f64::total_cmp);
                let len = self.pilot.len();
                for (k, t) in self.thresholds.iter_mut().enumerate() {
                    let at = (crop_percent(k) / 100.0 * len as f64) as usize;
                    *t = self.pilot[at.min(len - 1)];
                }
            }
            return;
        }
        self.measured += 1;
        self.all.push(class, x);
        for (crop, &limit) in self.crops.iter_mut().zip(&self.thresholds) {
            if x < limit {
                crop.push(class, x);
            }
        }
    }
}

/// What a difference would say: something about the secret, only about the (public)
/// key id, or nothing (an A/A control, where none exists).
#[derive(Clone, Copy, PartialEq)]
enum About {
    Secret,
    KeyId,
    Control,
}

struct Report {
    level: &'static str,
    name: &'static str,
    classes: [&'static str; 2],
    about: About,
    s: Sampler,
}

impl Report {
    /// The test with the largest |t| among those with enough measurements.
    fn max_t(&self) -> (String, f64) {
        let mut best = ("all".to_owned(), self.s.all.t().abs());
        for (k, crop) in self.s.crops.iter().enumerate() {
            if crop.enough() && crop.t().abs() > best.1 {
                best = (format!("p{:.1}", crop_percent(k)), crop.t().abs());
            }
        }
        best
    }

    fn verdict(&self) -> &'static str {
        let (_, t) = self.max_t();
        match (t, self.about) {
            _ if !self.s.all.enough() => "too few samples",
            (t, About::Control) if t < NO_EVIDENCE => "control: quiet, as expected",
            (_, About::Control) => "control: noise floor of this run",
            (t, _) if t < NO_EVIDENCE => "no evidence of a leak",
            (t, _) if t <= LEAK => "inconclusive: run longer",
            (_, About::Secret) => "LEAK: secret-dependent",
            (_, About::KeyId) => "differs: key id only (public)",
        }
    }
}

fn largest(reports: &[Report], about: About) -> f64 {
    (reports.iter().filter(|r| r.about == about))
        .map(|r| r.max_t().1)
        .fold(0.0, f64::max)
}

fn print_reports(reports: &[Report]) {
    println!(
        "\n== verify timing: dudect-style Welch t-test, classes A and B interleaved at random"
    );
    println!(
        "{:<8} {:<34} {:>9} {:>9} {:>9} {:>9} {:>7} {:>16}  verdict",
        "level",
        "comparison (A vs B)",
        "n A",
        "n B",
        "mean A ns",
        "mean B ns",
        "|t| all",
        "max |t| (crop)"
    );
    for r in reports {
        let w = &r.s.all;
        let (crop, t) = r.max_t();
        println!(
            "{:<8} {:<34} {:>9} {:>9} {:>9.1} {:>9.1} {:>7.2} {:>16}  {}",
            r.level,
            r.name,
            w.n[0],
            w.n[1],
            w.mean[0],
            w.mean[1],
            w.t().abs(),
            format!("{t:.2} ({crop})"),
            r.verdict()
        );
    }
    println!("\nclasses, and per crop (below threshold ns): mean A / mean B ns, |t|");
    for r in reports {
        println!("{:<8} {}", r.level, r.name);
        println!("    A = {}; B = {}", r.classes[0], r.classes[1]);
        let cells: Vec<String> = (r.s.crops.iter().zip(&r.s.thresholds))
            .enumerate()
            .map(|(k, (c, limit))| {
                format!(
                    "p{:.1}<{limit:.0}: {:.1}/{:.1} {:.2}",
                    crop_percent(k),
                    c.mean[0],
                    c.mean[1],
                    c.t().abs()
                )
            })
            .collect();
        for line in cells.chunks(4) {
            println!("    {}", line.join(" | "));
        }
    }
    println!(
        "\nlargest |t|: secret comparisons {:.2}; key-id comparisons {:.2}; A/A controls {:.2}",
        largest(reports, About::Secret),
        largest(reports, About::KeyId),
        largest(reports, About::Control),
    );
    println!(
        "thresholds: < {NO_EVIDENCE} no evidence at this sample size, > {LEAK} a difference. A \
         key-id difference says whether an id exists, not how much of a secret matched."
    );
}

// ---- inputs ----

/// `prefix_id_secret` with its checksum: a key the parser accepts.
fn key_with(id: &str, secret: &[u8]) -> String {
    let mut key = format!("{PREFIX}_{id}_{}", std::str::from_utf8(secret).unwrap());
    let sum = checksum(key.as_bytes());
    key.push_str(std::str::from_utf8(&sum).unwrap());
    key
}

/// `(key id, secret)` of a whole key.
fn split(key: &str) -> (String, Vec<u8>) {
    let p = parse(key).unwrap();
    let secret = p.secret().expose_secret().as_bytes().to_vec();
    (p.key_id().to_owned(), secret)
}

/// A base58 character other than `c`.
fn other_char(c: u8, r: u64) -> u8 {
    let at = ALPHABET.iter().position(|&a| a == c).unwrap();
    ALPHABET[(at + 1 + (r % 57) as usize) % ALPHABET.len()]
}

/// The classes' inputs, each `POOL` keys; known ids taken in turn.
struct Pools {
    /// A known key id with a secret that is wrong throughout.
    known_wrong: Vec<String>,
    /// A key id that is not in the store.
    unknown: Vec<String>,
    /// A known key with only its first, or only its last, secret character changed.
    first_wrong: Vec<String>,
    last_wrong: Vec<String>,
    /// Another pool like `first_wrong`, for the A/A control.
    first_wrong_too: Vec<String>,
}

fn pools(known: &[String], rng: &mut SplitMix) -> Pools {
    let prefix = Prefix::new(PREFIX).unwrap();
    let fresh = || split(generate(&prefix).unwrap().key().expose_secret());
    let mut one_changed = |at: usize| -> Vec<String> {
        (0..POOL)
            .map(|i| {
                let (id, mut secret) = split(&known[i % known.len()]);
                secret[at] = other_char(secret[at], rng.next());
                key_with(&id, &secret)
            })
            .collect()
    };
    let (first_wrong, last_wrong) = (one_changed(0), one_changed(SECRET_LEN - 1));
    let first_wrong_too = one_changed(0);
    let (mut known_wrong, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..POOL {
        let id = split(&known[i % known.len()]).0;
        let (other_id, other_secret) = fresh();
        known_wrong.push(key_with(&id, &fresh().1));
        unknown.push(key_with(&other_id, &other_secret));
    }
    let all = [&known_wrong, &unknown, &first_wrong, &last_wrong];
    assert!(all.iter().all(|p| p.iter().all(|k| !known.contains(k))));
    Pools {
        known_wrong,
        unknown,
        first_wrong,
        last_wrong,
        first_wrong_too,
    }
}

// ---- the service level ----

struct Fixture {
    rt: tokio::runtime::Runtime,
    service: Service,
    actor: Actor,
    known: Vec<String>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (service, actor, known) = rt.block_on(async {
        let config = Config {
            data_dir: dir.path().to_owned(),
            cache_ttl_ms: 3_600_000,
            failed_verifications_per_key_per_minute: 1_000_000_000,
            ..Config::default()
        };
        let (service, root) = common::sqlite_service(config).await;
        // The router installs the metrics recorder, as the server does; the keys are
        // created through the API.
        let app = keyhaven_server::router(service.clone());
        let ks = json!({"name": "timing", "prefix": PREFIX});
        let ks = call(&app, &root, "/v1/keyspaces", &ks).await;
        let mut known = Vec::new();
        for _ in 0..KNOWN_KEYS {
            let key = call(&app, &root, "/v1/keys", &json!({"keyspace_id": ks["id"]})).await;
            known.push(key["key"].as_str().unwrap().to_owned());
        }
        let actor = verify::authenticate(&service, &root, None)
            .await
            .unwrap()
            .unwrap();
        (service, actor, known)
    });
    Fixture {
        rt,
        service,
        actor,
        known,
        _dir: dir,
    }
}

fn request(key: &str) -> VerifyRequest {
    VerifyRequest {
        key: SecretString::from(key.to_owned()),
        scopes: Vec::new(),
        cost: None,
        ratelimits: None,
        client_ip: None,
        permissions: None,
        audience: None,
    }
}

impl Fixture {
    /// Measures `verify::verify` on `a` vs `b`; `cold` drops the id's cache entry before
    /// each call (outside the timed part).
    fn measure(&self, a: &[String], b: &[String], cold: bool, s: &mut Sampler) {
        let ids = [a, b].map(|pool| pool.iter().map(|k| split(k).0).collect::<Vec<_>>());
        let (service, actor) = (&self.service, &self.actor);
        self.rt.block_on(async {
            // Warm the cache (negative entries too) and check every answer.
            for key in a.iter().chain(b) {
                let code = verify::verify(service, actor, &request(key), |v| v.code).await;
                assert_eq!(code.unwrap(), VerifyCode::NotFound);
            }
            let mut wrong = 0u64;
            while let Some((class, i)) = s.next() {
                if cold {
                    service.cache.invalidate(&ids[class][i]);
                }
                // Built afresh each time: the allocator hands both classes the same
                // addresses. Dropped after the clock is read.
                let request = request([a, b][class][i].as_str());
                let start = Instant::now();
                let code = verify::verify(service, actor, &request, |v| v.code).await;
                let elapsed = start.elapsed();
                wrong += u64::from(!matches!(black_box(code), Ok(VerifyCode::NotFound)));
                s.record(class, elapsed);
            }
            assert_eq!(wrong, 0, "answers other than NOT_FOUND");
        });
    }
}

// ---- the core level ----

struct CoreInput {
    key: String,
    stored: Option<Verifier>,
}

/// What core does with a presented key: parse, MAC, constant-time compare.
fn core_verify(peppers: &PepperSet, key: &str, stored: Option<&Verifier>) -> bool {
    match parse(key) {
        Ok(p) => matches!(
            peppers.verify(p.key_id(), p.secret(), stored),
            Ok(Verification::Valid { .. })
        ),
        Err(_) => false,
    }
}

fn measure_core(peppers: &PepperSet, classes: [&[CoreInput]; 2], s: &mut Sampler) {
    for input in classes.iter().copied().flatten() {
        assert!(parse(&input.key).is_ok());
        assert!(!core_verify(peppers, &input.key, input.stored.as_ref()));
    }
    // One buffer for every input, so both classes are read from the same addresses.
    let mut key = String::with_capacity(MAX_KEY_LEN);
    while let Some((class, i)) = s.next() {
        let input = &classes[class][i];
        key.clear();
        key.push_str(&input.key);
        let stored = input.stored.clone();
        let start = Instant::now();
        let ok = core_verify(peppers, black_box(&key), black_box(stored.as_ref()));
        let elapsed = start.elapsed();
        assert!(!black_box(ok));
        s.record(class, elapsed);
    }
}

fn main() {
    let seconds: f64 = std::env::var("VERIFY_TIMING_SECONDS")
        .ok()
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .unwrap_or(60.0);
    let max_samples: u64 = std::env::var("VERIFY_TIMING_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = SplitMix(seed);
    let mut sampler = |share: f64| {
        let budget = Duration::from_secs_f64(seconds * share);
        Sampler::new(rng.next(), budget, max_samples)
    };

    let f = fixture();
    let p = pools(&f.known, &mut SplitMix(seed ^ 0x5EED));
    let mut reports = Vec::new();
    let mut report = |level, name, classes, about, s| {
        reports.push(Report {
            level,
            name,
            classes,
            about,
            s,
        })
    };
    println!("measuring for about {seconds:.0} s (VERIFY_TIMING_SECONDS) ...");

    let mut s = sampler(0.22);
    f.measure(&p.first_wrong, &p.last_wrong, false, &mut s);
    let classes = [
        "known id, first secret char wrong",
        "known id, last secret char wrong",
    ];
    report(
        "service",
        "first vs last secret char wrong",
        classes,
        About::Secret,
        s,
    );

    let mut s = sampler(0.12);
    f.measure(&p.first_wrong, &p.first_wrong_too, false, &mut s);
    let classes = [
        "first secret char wrong, pool 1",
        "first secret char wrong, pool 2",
    ];
    report(
        "service",
        "A/A control (same kind)",
        classes,
        About::Control,
        s,
    );

    let mut s = sampler(0.18);
    f.measure(&p.known_wrong, &p.unknown, false, &mut s);
    let classes = [
        "known id, wrong secret (cache hit)",
        "unknown id (negative cache hit)",
    ];
    report(
        "service",
        "known id vs unknown id, warm",
        classes,
        About::KeyId,
        s,
    );

    let mut s = sampler(0.08);
    f.measure(&p.known_wrong, &p.unknown, true, &mut s);
    let classes = [
        "known id, wrong secret, store read",
        "unknown id, store read",
    ];
    report(
        "service",
        "known id vs unknown id, cold",
        classes,
        About::KeyId,
        s,
    );

    // Core: each known id's stored verifier, computed as creating the key did.
    let peppers = f.service.peppers.as_ref();
    let verifier_of = |key: &str| {
        let p = parse(key).unwrap();
        peppers.verifier(p.key_id(), p.secret())
    };
    let inputs = |keys: &[String], known: bool| -> Vec<CoreInput> {
        keys.iter()
            .map(|key| {
                let id = split(key).0;
                let real = f.known.iter().find(|k| split(k).0 == id);
                CoreInput {
                    key: key.clone(),
                    stored: real.filter(|_| known).map(|k| verifier_of(k)),
                }
            })
            .collect()
    };
    // The right secret, against a stored MAC that differs from its MAC in one byte.
    let mac_differs_at = |at: usize| -> Vec<CoreInput> {
        (0..POOL)
            .map(|i| {
                let key = f.known[i % KNOWN_KEYS].clone();
                let v = verifier_of(&key);
                let mut mac = *v.mac();
                mac[at] ^= 1 << (i % 8);
                let stored = Some(Verifier::from_parts(v.version(), mac));
                CoreInput { key, stored }
            })
            .collect()
    };

    let mut s = sampler(0.1);
    let (a, b) = (inputs(&p.first_wrong, true), inputs(&p.last_wrong, true));
    measure_core(peppers, [&a, &b], &mut s);
    let classes = [
        "known id, first secret char wrong",
        "known id, last secret char wrong",
    ];
    report(
        "core",
        "first vs last secret char wrong",
        classes,
        About::Secret,
        s,
    );

    let mut s = sampler(0.1);
    let (a, b) = (mac_differs_at(0), mac_differs_at(31));
    measure_core(peppers, [&a, &b], &mut s);
    let classes = [
        "right secret, stored MAC byte 0 differs",
        "right secret, MAC byte 31 differs",
    ];
    report(
        "core",
        "MAC differs in first vs last byte",
        classes,
        About::Secret,
        s,
    );

    let mut s = sampler(0.08);
    let (a, b) = (
        inputs(&p.first_wrong, true),
        inputs(&p.first_wrong_too, true),
    );
    measure_core(peppers, [&a, &b], &mut s);
    let classes = [
        "first secret char wrong, pool 1",
        "first secret char wrong, pool 2",
    ];
    report(
        "core",
        "A/A control (same kind)",
        classes,
        About::Control,
        s,
    );

    let mut s = sampler(0.08);
    let (a, b) = (inputs(&p.known_wrong, true), inputs(&p.unknown, false));
    measure_core(peppers, [&a, &b], &mut s);
    let classes = [
        "known id, wrong secret (stored MAC)",
        "unknown id (no stored MAC)",
    ];
    report("core", "known id vs unknown id", classes, About::KeyId, s);

    print_reports(&reports);
}
