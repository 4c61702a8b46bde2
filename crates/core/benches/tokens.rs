//! Offline token verification per second on one core, beside a key's verify (parse,
//! checksum, MAC, compare) in the same run. Rows are measured interleaved in rounds, so
//! a busy machine slows them all alike; the table gives each row's best and median
//! round. Target (issue #20): at least 20,000 Ed25519 token verifications per second
//! per core; the attenuation rows show what narrowing costs a verifier.
//!
//! Run: `cargo bench -p keyhaven-core --bench tokens`
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use keyhaven_core::token::{self, Expect, SigningKey, TokenClaims, VerifyingKeys, attenuable, jws};
use keyhaven_core::{Pepper, PepperSet, PepperVersion, Prefix, generate, parse};
use secrecy::ExposeSecret;

const ROUNDS: usize = 15;
const ROUND: Duration = Duration::from_millis(200);

fn main() {
    let signing = SigningKey::from_seed(1, &[7; 32]).unwrap();
    let keys = VerifyingKeys::new(vec![signing.public().clone()]);
    let claims = TokenClaims {
        sub: "7Gx9QbWkP2mZ".into(),
        ks: "ks_0123456789".into(),
        owner: Some("customer-42".into()),
        scopes: vec!["read".into(), "write".into()],
        aud: None,
        iat: 1_000,
        exp: 1_000_000,
        jti: "AAAAAAAAAAAAAAAAAAAAAA".into(),
    };
    let read = ["read".to_owned()];
    let expect = Expect {
        now: 2_000,
        audience: None,
        scopes: &read,
    };
    let jws_token = jws::sign(&signing, &claims);
    let biscuit = attenuable::mint(&signing, &claims).unwrap();
    let narrowed = attenuable::attenuate(
        &biscuit,
        &attenuable::Narrowing {
            scopes: Some(vec!["read".into()]),
            expires_at: Some(500_000),
            audience: None,
        },
    )
    .unwrap();
    let peppers =
        PepperSet::new(vec![Pepper::new(PepperVersion::new(1).unwrap(), &[9; 32])]).unwrap();
    let key = generate(&Prefix::new("acme_live").unwrap()).unwrap();
    let key = key.key().expose_secret().to_owned();
    let parsed = parse(&key).unwrap();
    let stored = peppers.verifier(parsed.key_id(), parsed.secret());

    type Row<'a> = (&'a str, Box<dyn Fn() -> bool + 'a>);
    let rows: Vec<Row<'_>> = vec![
        (
            "key verify (parse + MAC + compare)",
            Box::new(|| {
                let p = parse(black_box(&key)).unwrap();
                peppers
                    .verify(p.key_id(), p.secret(), Some(&stored))
                    .is_ok()
            }),
        ),
        (
            "JWS (EdDSA) verify",
            Box::new(|| jws::verify(black_box(&jws_token), &keys, expect).is_ok()),
        ),
        (
            "biscuit verify, as minted",
            Box::new(|| token::verify(black_box(&biscuit), &keys, expect).is_ok()),
        ),
        (
            "biscuit verify, narrowed once",
            Box::new(|| token::verify(black_box(&narrowed), &keys, expect).is_ok()),
        ),
        (
            "biscuit narrowing (holder, offline)",
            Box::new(|| {
                attenuable::attenuate(
                    black_box(&biscuit),
                    &attenuable::Narrowing {
                        scopes: Some(vec!["read".into()]),
                        ..Default::default()
                    },
                )
                .is_ok()
            }),
        ),
    ];
    for (name, f) in &rows {
        assert!(f(), "{name} must succeed");
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in rows.iter().enumerate() {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < ROUND {
                for _ in 0..16 {
                    black_box(f());
                }
                n += 16;
            }
            rates[i].push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    println!(
        "\n{:<38} {:>12} {:>12} {:>10}",
        "one core, per second", "best", "median", "vs key"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let key_median = median(&mut rates[0].clone());
    for ((name, _), r) in rows.iter().zip(rates.iter_mut()) {
        let best = r.iter().copied().fold(0.0, f64::max);
        let m = median(r);
        println!("{name:<38} {best:>12.0} {m:>12.0} {:>9.3}×", m / key_median);
    }
    println!("(\"vs key\": the row's median rate over the key verify's median rate)");
}
