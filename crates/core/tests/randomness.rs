//! Statistical checks on generated keys: a million keys, no repeated key id or secret,
//! and every character position uniform over the base58 alphabet.
//!
//! Uniformity is judged by a chi-square test per position (57 degrees of freedom). With
//! 42 positions, testing each at p > 0.001 would fail about 4% of good runs by chance,
//! so each position is tested at 0.001/42 (Bonferroni) and all positions together, as
//! one chi-square with 42×57 degrees of freedom, at p > 0.001. A control test shows the
//! same statistic rejects the classic `byte % 58` bias.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers may fail loudly

use std::collections::HashSet;

use keyhaven_core::base58::{ALPHABET, digit_value};
use keyhaven_core::format::{KEY_ID_LEN, SECRET_LEN};
use keyhaven_core::{Prefix, generate, random};
use secrecy::ExposeSecret;
use statrs::distribution::{ChiSquared, ContinuousCDF};

const KEYS: usize = 1_000_000;
const POSITIONS: usize = KEY_ID_LEN + SECRET_LEN;
const ALPHA: f64 = 0.001;

/// Chi-square statistic of `counts` against a uniform distribution.
fn chi_square(counts: &[u64]) -> f64 {
    let n: u64 = counts.iter().sum();
    let expected = n as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

fn p_value(stat: f64, dof: f64) -> f64 {
    ChiSquared::new(dof).unwrap().sf(stat)
}

#[test]
fn a_million_keys_are_unique_and_uniform() {
    let prefix = Prefix::new("t").unwrap();
    let mut ids: HashSet<[u8; KEY_ID_LEN]> = HashSet::with_capacity(KEYS);
    let mut secrets: HashSet<[u8; SECRET_LEN]> = HashSet::with_capacity(KEYS);
    let mut counts = vec![[0u64; 58]; POSITIONS];
    for _ in 0..KEYS {
        let k = generate(&prefix).unwrap();
        let s = k.key().expose_secret().as_bytes();
        let id: [u8; KEY_ID_LEN] = s[2..2 + KEY_ID_LEN].try_into().unwrap();
        let secret: [u8; SECRET_LEN] = s[3 + KEY_ID_LEN..3 + KEY_ID_LEN + SECRET_LEN]
            .try_into()
            .unwrap();
        for (pos, &c) in id.iter().chain(secret.iter()).enumerate() {
            counts[pos][usize::from(digit_value(c).unwrap())] += 1;
        }
        assert!(ids.insert(id), "duplicate key id");
        assert!(secrets.insert(secret), "duplicate secret");
    }

    let per_position_alpha = ALPHA / POSITIONS as f64;
    let mut total = 0.0;
    let mut worst = 1.0f64;
    for (pos, c) in counts.iter().enumerate() {
        let stat = chi_square(c);
        let p = p_value(stat, 57.0);
        worst = worst.min(p);
        total += stat;
        assert!(
            p > per_position_alpha,
            "position {pos}: chi-square {stat:.1}, p = {p:.2e} rejects uniformity; counts {c:?}"
        );
    }
    let p_all = p_value(total, (POSITIONS * 57) as f64);
    println!("smallest per-position p = {worst:.4}, combined p = {p_all:.4}");
    assert!(
        p_all > ALPHA,
        "combined chi-square {total:.1}, p = {p_all:.2e}"
    );
}

/// Control: the statistic above does detect the bias of reducing a byte modulo 58, so a
/// generator with that bug would fail the test.
#[test]
fn the_uniformity_check_detects_modulo_bias() {
    let mut buf = vec![0u8; 1_000_000];
    random::fill(&mut buf).unwrap();
    let mut biased = [0u64; 58];
    let mut rejection = [0u64; 58];
    for &b in &buf {
        biased[usize::from(b % 58)] += 1;
        if (b & 0x3F) < 58 {
            rejection[usize::from(b & 0x3F)] += 1;
        }
    }
    assert!(p_value(chi_square(&biased), 57.0) < 1e-9);
    assert!(p_value(chi_square(&rejection), 57.0) > 1e-6);
    assert_eq!(ALPHABET.len(), 58);
}
