//! Verification cost, measured against a yardstick in the same run.
//!
//! Prints criterion's per-operation figures, then a summary whose rows were measured
//! interleaved (A, B, C, A, B, C, …) so that a busy machine slows them all alike and the
//! ratios stay meaningful. Targets (issue #2): a full verify costs at most 1.5× a raw
//! SHA-256 of 64 bytes; a malformed key is rejected at least 10× faster than a full
//! verify.
//!
//! Run: `cargo bench -p keyhaven-core --bench verify`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use keyhaven_core::{Pepper, PepperSet, PepperVersion, Prefix, generate, parse};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

struct Fixture {
    peppers: PepperSet,
    valid: String,
    stored: keyhaven_core::Verifier,
    bad_length: String,
    bad_char: String,
    bad_checksum: String,
}

fn fixture() -> Fixture {
    let peppers = PepperSet::new(vec![Pepper::new(
        PepperVersion::new(1).unwrap(),
        &[7u8; 32],
    )])
    .unwrap();
    let k = generate(&Prefix::new("acme_live").unwrap()).unwrap();
    let valid = k.key().expose_secret().to_owned();
    let p = parse(&valid).unwrap();
    let stored = peppers.verifier(p.key_id(), p.secret());
    let bad_length = valid[..40].to_owned();
    let mut bad_char = valid.clone().into_bytes();
    bad_char[30] = b'-';
    let mut bad_checksum = valid.clone().into_bytes();
    bad_checksum[40] = if bad_checksum[40] == b'a' { b'b' } else { b'a' };
    Fixture {
        peppers,
        valid,
        stored,
        bad_length,
        bad_char: String::from_utf8(bad_char).unwrap(),
        bad_checksum: String::from_utf8(bad_checksum).unwrap(),
    }
}

/// What the server does with a presented key before any policy: parse, checksum, MAC,
/// constant-time compare.
fn full_verify(f: &Fixture, key: &str) -> bool {
    match parse(key) {
        Ok(p) => matches!(
            f.peppers.verify(p.key_id(), p.secret(), Some(&f.stored)),
            Ok(keyhaven_core::Verification::Valid { .. })
        ),
        Err(_) => false,
    }
}

fn sha256_64(input: &[u8; 64]) -> [u8; 32] {
    Sha256::digest(input).into()
}

type Op<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);

fn ops(f: &Fixture) -> Vec<Op<'_>> {
    let block = [0x5Au8; 64];
    vec![
        (
            "sha256 of 64 bytes (yardstick)",
            Box::new(move || black_box(sha256_64(black_box(&block)))[0] == 0),
        ),
        (
            "full verify, valid key",
            Box::new(|| full_verify(f, black_box(&f.valid))),
        ),
        (
            "reject: wrong length",
            Box::new(|| full_verify(f, black_box(&f.bad_length))),
        ),
        (
            "reject: bad character",
            Box::new(|| full_verify(f, black_box(&f.bad_char))),
        ),
        (
            "reject: bad checksum (typo)",
            Box::new(|| full_verify(f, black_box(&f.bad_checksum))),
        ),
    ]
}

fn criterion_benches(c: &mut Criterion, f: &Fixture) {
    assert!(full_verify(f, &f.valid));
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    for (name, op) in ops(f) {
        group.bench_function(name, |b| b.iter(|| black_box(op())));
    }
    group.finish();
}

/// Interleaved rounds; returns (median, minimum) nanoseconds per operation for each op.
/// The minimum is the least disturbed by other work on the machine; the median is shown
/// beside it so a reader can see how noisy the run was.
fn interleaved(ops: &[Op<'_>], rounds: usize, per_round: u32) -> Vec<(f64, f64)> {
    let mut samples = vec![Vec::with_capacity(rounds); ops.len()];
    for _ in 0..rounds {
        for (i, (_, op)) in ops.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..per_round {
                black_box(op());
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / f64::from(per_round));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            (s[s.len() / 2], s[0])
        })
        .collect()
}

fn main() {
    let f = fixture();
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &f);
    c.final_summary();

    let ops = ops(&f);
    let ns = interleaved(&ops, 31, 200_000);
    println!();
    println!("summary (one core, 31 interleaved rounds of 200,000 calls each)");
    println!(
        "{:<34} {:>10} {:>10} {:>14} {:>16}",
        "operation", "median ns", "best ns", "ops/s (median)", "ratio (best)"
    );
    let (sha, full) = (ns[0].1, ns[1].1);
    for (i, ((name, _), &(median, best))) in ops.iter().zip(&ns).enumerate() {
        let ratio = match i {
            0 => "yardstick".to_owned(),
            1 => format!("{:.2}x sha256", full / sha),
            _ => format!("{:.1}x faster", full / best),
        };
        println!(
            "{name:<34} {median:>10.1} {best:>10.1} {:>14.0} {ratio:>16}",
            1e9 / median
        );
    }
    let median_ratio = ns[1].0 / ns[0].0;
    println!(
        "targets: full verify <= 1.5x sha256 -> {:.2}x (best) / {median_ratio:.2}x (median); \
         malformed >= 10x faster -> length {:.1}x, character {:.1}x, checksum {:.1}x",
        full / sha,
        full / ns[2].1,
        full / ns[3].1,
        full / ns[4].1
    );
}
