//! The OpenAPI 3.1 document, generated from the handlers' annotations. Served at
//! `/openapi.json` and checked in as `docs/openapi.json` (a test fails when it is stale;
//! `KEYHAVEN_UPDATE_OPENAPI=1 cargo test -p keyhaven-server openapi` rewrites it).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{audit, health, keys, keyspaces, owners, usage, verify, webhooks};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Keyhaven", description = "API keys done right: admin API and verify API."),
    paths(
        keyspaces::create, keyspaces::list, keyspaces::get, keyspaces::update, keyspaces::delete,
        owners::create, owners::list, owners::get, owners::update, owners::delete,
        keys::create, keys::import, keys::expiring, keys::list, keys::get, keys::update, keys::revoke, keys::rotate, keys::reveal, keys::delete,
        verify::verify,
        usage::key, usage::owner, usage::keyspace, usage::totals,
        audit::list, audit::events,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::deliveries, webhooks::delivery, webhooks::resend,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&RootKeyAuth),
    tags(
        (name = "keyspaces", description = "Families of keys sharing a prefix"),
        (name = "owners", description = "Your customers, who own keys"),
        (name = "keys", description = "Create, list, update, revoke and delete keys"),
        (name = "verify", description = "Check a presented key"),
        (name = "usage", description = "Verifications by outcome, over time"),
        (name = "audit", description = "Every admin change, and the event log"),
        (name = "webhooks", description = "Events delivered to your endpoints, signed"),
        (name = "health", description = "Liveness, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct RootKeyAuth;

impl Modify for RootKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "root_key",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("A root key (`kh_root_…`)"))
                        .build(),
                ),
            );
        }
    }
}

/// The document as pretty JSON with a trailing newline, exactly as checked in.
pub fn document() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
