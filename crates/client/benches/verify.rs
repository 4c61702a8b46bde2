//! `cargo bench -p keyhaven-client`: what the client costs on the caller's side.
//!
//! - `cached_verify`: `Client::verify` answered from the cache (one thread, no network:
//!   the key was verified once against a real server in this process, whose change
//!   stream keeps the cache trusted during the run).
//! - `layer`: one request through an axum route (in-process `oneshot`, no socket) with
//!   the Keyhaven layer in front (cached verification) and without it, same run.
//!
//! Besides criterion's figures, prints one summary line per measure. Nothing is asserted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a benchmark fails loudly

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyhaven_client::layer::KeyhavenLayer;
use keyhaven_client::types::{CreateKey, CreateKeyspace};
use keyhaven_client::{Client, ExposeSecret};
use keyhaven_service::clock::Clock;
use keyhaven_service::config::Config;
use keyhaven_service::root_keys;
use keyhaven_store::{SqliteStore, Store, pepper_file};
use tower::ServiceExt;

struct Setup {
    runtime: tokio::runtime::Runtime,
    client: Client,
    key: String,
    _dir: tempfile::TempDir,
}

/// A server in this process, a client whose cache holds one valid key.
fn setup() -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (client, key) = runtime.block_on(async {
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&config.database_path()).await.unwrap());
        let (peppers, _) = pepper_file::load_or_create(dir.path(), None).unwrap();
        let root = root_keys::create(
            store.as_ref(),
            &peppers,
            vec!["*".into()],
            None,
            None,
            root_keys::CLI_ACTOR,
        )
        .await
        .unwrap();
        let state =
            keyhaven_server::AppState::with_parts(store, peppers, None, config, Clock::System)
                .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(keyhaven_server::serve(
            listener,
            state,
            std::future::pending(),
        ));
        let client = Client::new(url, root.key().expose_secret().to_owned()).unwrap();
        let ks = client
            .keyspaces()
            .create(&CreateKeyspace::new("bench", "bench"))
            .await
            .unwrap();
        let created = client.keys().create(&CreateKey::new(ks.id)).await.unwrap();
        let key = created.key.expose_secret().to_owned();
        assert!(client.wait_until_coherent(Duration::from_secs(5)).await);
        for _ in 0..100 {
            client.verify(&key).await.unwrap();
            if client.cache_stats().hits > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            client.cache_stats().hits > 0,
            "the key never came from the cache"
        );
        (client, key)
    });
    Setup {
        runtime,
        client,
        key,
        _dir: dir,
    }
}

/// `n` cached verifications on this thread; the time they took.
fn verify_n(s: &Setup, n: u64) -> Duration {
    s.runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..n {
            black_box(s.client.verify(black_box(&s.key)).await.unwrap());
        }
        start.elapsed()
    })
}

fn request(key: &str) -> Request<Body> {
    Request::get("/orders")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap()
}

/// `n` requests through `app`, one after the other; the time they took.
fn serve_n(s: &Setup, app: &Router, n: u64) -> Duration {
    s.runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..n {
            let response = app.clone().oneshot(request(&s.key)).await.unwrap();
            assert_eq!(response.status(), 200);
            black_box(response);
        }
        start.elapsed()
    })
}

fn benches(c: &mut Criterion) {
    let s = setup();

    let mut group = c.benchmark_group("client");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cached_verify", |b| b.iter_custom(|n| verify_n(&s, n)));
    let plain = Router::new().route("/orders", get(|| async { "ok" }));
    let guarded = Router::new()
        .route("/orders", get(|| async { "ok" }))
        .layer(KeyhavenLayer::new(s.client.clone()));
    group.bench_function("route_without_layer", |b| {
        b.iter_custom(|n| serve_n(&s, &plain, n))
    });
    group.bench_function("route_with_layer", |b| {
        b.iter_custom(|n| serve_n(&s, &guarded, n))
    });
    group.finish();

    // The summary, measured again in one stretch each (the stream keeps vouching).
    let before = s.client.cache_stats();
    let n = 1_000_000;
    let took = verify_n(&s, n);
    let hits = s.client.cache_stats().hits - before.hits;
    println!(
        "cached verify: {:.0} ops/s on one thread ({:.0} ns each; {hits} of {n} from the cache)",
        n as f64 / took.as_secs_f64(),
        took.as_nanos() as f64 / n as f64,
    );
    let n = 200_000;
    let without = serve_n(&s, &plain, n).as_nanos() as f64 / n as f64;
    let with = serve_n(&s, &guarded, n).as_nanos() as f64 / n as f64;
    println!(
        "axum route in-process: {without:.0} ns without the layer, {with:.0} ns with it \
         (+{:.0} ns per request)",
        with - without
    );
}

criterion_group! {
    name = client;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(client);
