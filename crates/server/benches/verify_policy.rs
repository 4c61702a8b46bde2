//! The cost of access policy on the verify path, in process (as `verify_limits`): a
//! verification asking a 5-term permission query of a key whose permissions come from
//! roles, from a `client_ip` checked against IP allowlists on the key and its keyspace,
//! against a plain verification of a plain key.
//!
//! Prints criterion's figures, then a summary measured interleaved (plain, policy,
//! plain, …) so a busy machine slows both alike. Target (issue #21): ≥ 90% of plain.
//!
//! Run: `cargo bench -p keyhaven-server --bench verify_policy`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use common::call;
use criterion::Criterion;
use keyhaven_service::config::Config;
use serde_json::{Value, json};
use tower::ServiceExt;

const QUERY: &str = "documents.read AND (documents.write OR admin) AND (billing.view OR \
                     billing.edit) AND reports.run";

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (app, root, bodies) = rt.block_on(async {
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let (service, root) = common::sqlite_service(config).await;
        let app = keyhaven_server::router(service);
        let open = json!({"name": "open", "prefix": "open"});
        let open = call(&app, &root, "/v1/keyspaces", &open).await;
        let plain = call(&app, &root, "/v1/keys", &json!({"keyspace_id": open["id"]})).await;
        let guarded = json!({"name": "guarded", "prefix": "guarded",
            "ip_allowlist": ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]});
        let guarded = call(&app, &root, "/v1/keyspaces", &guarded).await;
        let roles = format!("/v1/keyspaces/{}/roles", guarded["id"].as_str().unwrap());
        for (name, permissions) in [
            ("reader", json!(["documents.read", "reports.run"])),
            ("writer", json!(["documents.write"])),
            ("billing", json!(["billing.view"])),
        ] {
            call(
                &app,
                &root,
                &roles,
                &json!({"name": name, "permissions": permissions}),
            )
            .await;
        }
        let key = json!({"keyspace_id": guarded["id"], "roles": ["reader", "writer", "billing"],
            "ip_allowlist": ["10.1.0.0/16", "10.2.0.0/16"]});
        let key = call(&app, &root, "/v1/keys", &key).await;
        let bodies = [
            json!({"key": plain["key"]}).to_string(),
            json!({"key": key["key"], "permissions": QUERY, "client_ip": "10.2.3.4"}).to_string(),
        ];
        (app, root, bodies)
    });
    let verify_raw = |body: &str| -> axum::body::Bytes {
        rt.block_on(async {
            let request = Request::post("/v1/keys/verify")
                .header(header::AUTHORIZATION, format!("Bearer {root}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap()
        })
    };
    for body in &bodies {
        let answer: Value = serde_json::from_slice(&verify_raw(body)).unwrap();
        assert_eq!(answer["code"], "VALID", "{answer}");
    }

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    c.bench_function("verify handler, plain", |b| {
        b.iter(|| black_box(verify_raw(&bodies[0])))
    });
    c.bench_function("verify handler, 5-term query + allowlists", |b| {
        b.iter(|| black_box(verify_raw(&bodies[1])))
    });

    const ROUNDS: usize = 31;
    const CALLS: u32 = 2_000;
    let [plain, policy] = common::interleaved_medians(&bodies, ROUNDS, CALLS, |body| {
        black_box(verify_raw(body));
    });
    println!("\n== verify handler in process, interleaved, median of {ROUNDS} rounds of {CALLS}");
    println!("{}", common::rate_line("plain", plain));
    println!("{}", common::rate_line("5-term query + allowlists", policy));
    println!(
        "policy / plain throughput: {:.1}%  (target >= 90%)",
        100.0 * plain.as_secs_f64() / policy.as_secs_f64()
    );
}
