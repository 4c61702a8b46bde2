//! The cost of rate limits on the verify path, in process: the whole
//! `POST /v1/keys/verify` handler (router, auth, JSON in and out, cache, MAC, policy,
//! limits) through `tower::ServiceExt::oneshot`, without sockets, so the network and
//! the load generator (which share this machine's two cores in `bench/limits.sh`) do
//! not blur the figure.
//!
//! Prints criterion's figures, then a summary measured interleaved (no limits, two
//! limits, no limits, …) so a busy machine slows both alike. Target (issue #5): verify
//! with two named limits on the key runs at ≥ 90% of verify without limits.
//!
//! Run: `cargo bench -p keyhaven-server --bench verify_limits`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use common::call;
use criterion::Criterion;
use keyhaven_service::config::Config;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: Router,
    root: String,
    plain: String,
    limited: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, root, plain, limited) = rt.block_on(async {
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let (service, root) = common::sqlite_service(config).await;
        let app = keyhaven_server::router(service);
        let ks = json!({"name": "bench", "prefix": "bench"});
        let ks = call(&app, &root, "/v1/keyspaces", &ks).await;
        let plain = call(&app, &root, "/v1/keys", &json!({"keyspace_id": ks["id"]})).await;
        let limited = json!({"keyspace_id": ks["id"], "ratelimits": [
            {"name": "requests", "limit": 1_000_000_000u64, "duration_ms": 60_000},
            {"name": "burst", "limit": 1_000_000_000u64, "duration_ms": 1_000},
        ]});
        let limited = call(&app, &root, "/v1/keys", &limited).await;
        (
            app,
            root,
            plain["key"].as_str().unwrap().to_owned(),
            limited["key"].as_str().unwrap().to_owned(),
        )
    });
    Fixture {
        rt,
        app,
        root,
        plain,
        limited,
        _dir: dir,
    }
}

impl Fixture {
    /// One verification through the router; returns the answer's bytes unparsed (a
    /// client's parsing is not the server's cost).
    fn verify_raw(&self, body: &str) -> axum::body::Bytes {
        self.rt.block_on(async {
            let request = Request::post("/v1/keys/verify")
                .header(header::AUTHORIZATION, format!("Bearer {}", self.root))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap();
            let response = self.app.clone().oneshot(request).await.unwrap();
            axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap()
        })
    }

    fn verify(&self, key: &str) -> Value {
        serde_json::from_slice(&self.verify_raw(&json!({ "key": key }).to_string())).unwrap()
    }
}

fn main() {
    let f = fixture();
    let plain = f.verify(&f.plain);
    let limited = f.verify(&f.limited);
    assert_eq!(plain["code"], "VALID");
    assert_eq!(limited["code"], "VALID");
    assert_eq!(limited["ratelimits"].as_array().map(Vec::len), Some(2));

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let bodies = [&f.plain, &f.limited].map(|k| json!({ "key": k }).to_string());
    c.bench_function("verify handler, no limits", |b| {
        b.iter(|| black_box(f.verify_raw(&bodies[0])))
    });
    c.bench_function("verify handler, two named limits", |b| {
        b.iter(|| black_box(f.verify_raw(&bodies[1])))
    });

    // Interleaved rounds; the median of each side.
    const ROUNDS: usize = 31;
    const CALLS: u32 = 2_000;
    let [plain, limited] = common::interleaved_medians(&bodies, ROUNDS, CALLS, |body| {
        black_box(f.verify_raw(body));
    });
    println!("\n== verify handler in process, interleaved, median of {ROUNDS} rounds of {CALLS}");
    println!("{}", common::rate_line("no limits", plain));
    println!("{}", common::rate_line("two named limits", limited));
    println!(
        "two limits / none throughput: {:.1}%  (target >= 90%)",
        100.0 * plain.as_secs_f64() / limited.as_secs_f64()
    );
}
