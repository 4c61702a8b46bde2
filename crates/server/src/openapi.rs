//! The OpenAPI 3.1 document, generated from the handlers' annotations. Served at
//! `/openapi.json` and checked in as `docs/openapi.json` (a test fails when it is stale;
//! `KEYHAVEN_UPDATE_OPENAPI=1 cargo test -p keyhaven --test api openapi` rewrites it).
//!
//! Conventions the tests below hold every operation to: a unique `<resource>_<verb>`
//! operationId, a description on every response, query parameters declared `in: query`,
//! and errors documented as `application/problem+json` (handlers list
//! [`crate::error::ClientError`] for their 4xx answers). Schema limits (`maxLength`,
//! `maximum`, ...) are literals in the annotations; the tests tie them to the constants
//! the validation uses.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    audit, changes, credits, forward_auth, health, keys, keyspaces, leaks, owners, plans, portal,
    ratelimits, roles, root_keys, tokens, usage, verify, webhooks,
};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Keyhaven", description = "API keys done right: admin API and verify API."),
    paths(
        keyspaces::create, keyspaces::list, keyspaces::get, keyspaces::update, keyspaces::delete,
        owners::create, owners::list, owners::get, owners::update, owners::delete,
        keys::create, keys::create_batch, keys::import, keys::expiring, keys::list, keys::get, keys::update, keys::revoke, keys::rotate, keys::reveal, keys::delete,
        credits::key, credits::owner,
        roles::create, roles::list, roles::get, roles::update, roles::delete,
        plans::create, plans::list, plans::get, plans::update, plans::delete,
        verify::verify, verify::verify_batch, ratelimits::limit, ratelimits::set_override, ratelimits::list_overrides, ratelimits::delete_override, forward_auth::forward_auth, changes::stream,
        leaks::github, leaks::report, leaks::self_revoke,
        tokens::mint, tokens::jwks,
        usage::key, usage::owner, usage::keyspace, usage::totals,
        audit::list, audit::events,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::deliveries, webhooks::delivery, webhooks::resend,
        portal::create,
        root_keys::list, root_keys::get, root_keys::create, root_keys::revoke, root_keys::rotate,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&RootKeyAuth),
    tags(
        (name = "keyspaces", description = "Families of keys sharing a prefix"),
        (name = "owners", description = "Your customers, who own keys"),
        (name = "plans", description = "Templates of limits, quota, scopes and roles that keys and owners are on"),
        (name = "keys", description = "Create, list, update, revoke and delete keys"),
        (name = "verify", description = "Check a presented key"),
        (name = "ratelimits", description = "Rate limits for things that are not keys"),
        (name = "changes", description = "Invalidations for remote caches, as server-sent events"),
        (name = "usage", description = "Verifications by outcome, over time"),
        (name = "audit", description = "Every admin change, and the event log"),
        (name = "webhooks", description = "Events delivered to your endpoints, signed"),
        (name = "portal", description = "Links for your customers to manage their own keys"),
        (name = "root-keys", description = "The admin API's own keys"),
        (name = "tokens", description = "Signed tokens minted from keys, verified offline against the JWKS"),
        (name = "leaks", description = "Leaked keys reported by secret scanners, acted on per policy"),
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
            components.add_security_scheme(
                "api_key",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("One of your customers' keys, as its own credential"))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(&document()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn operation_ids_are_unique_and_snake_case() {
        let doc = doc();
        let mut seen = BTreeSet::new();
        for (path, method, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                id.contains('_') && id.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{method} {path}: operationId {id:?}"
            );
            assert!(
                seen.insert(id.to_owned()),
                "{method} {path}: {id} is used twice"
            );
        }
    }

    #[test]
    fn parameters_are_where_the_server_reads_them() {
        let doc = doc();
        for (path, method, op) in operations(&doc) {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let in_path = path.contains(&format!("{{{name}}}"));
                match p["in"].as_str().unwrap() {
                    "path" => assert!(in_path && p["required"] == true, "{method} {path}: {name}"),
                    "query" | "header" => assert!(!in_path, "{method} {path}: {name}"),
                    other => panic!("{method} {path}: {name} in {other}"),
                }
            }
        }
        let totals = &doc["paths"]["/v1/keys/usage"]["get"]["parameters"];
        let key_ids = totals
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "key_ids");
        assert_eq!(key_ids.unwrap()["required"], true);
        let list = &doc["paths"]["/v1/keys"]["get"]["parameters"];
        assert!(
            list.as_array()
                .unwrap()
                .iter()
                .all(|p| p["required"] == false)
        );
    }

    #[test]
    fn every_response_is_described_and_errors_are_problems() {
        let doc = doc();
        for (path, method, op) in operations(&doc) {
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                let what = format!("{method} {path} {status}");
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{what}"
                );
                if status.starts_with('4') || status.starts_with('5') {
                    let types: Vec<&String> =
                        response["content"].as_object().unwrap().keys().collect();
                    assert_eq!(types, [crate::error::PROBLEM_CONTENT_TYPE], "{what}");
                }
            }
            if path != "/healthz" && path != "/readyz" && path != "/metrics" {
                assert!(responses.contains_key("4XX"), "{method} {path}");
            }
        }
    }

    #[test]
    fn documented_limits_are_the_enforced_ones() {
        use crate::routes::{ratelimits, verify};
        use keyhaven_service::limits::spec as limits;
        use keyhaven_service::{keys, keyspaces, validate, webhooks};
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let checks: [(&str, u64); 21] = [
            ("/CreateKeyspace/properties/name/maxLength", 200),
            (
                "/CreateKeyspace/properties/prefix/maxLength",
                keyhaven_core::format::MAX_PREFIX_LEN as u64,
            ),
            (
                "/CreateKeyspace/properties/max_key_age_seconds/maximum",
                keyspaces::MAX_POLICY_SECONDS as u64,
            ),
            (
                "/UpdateKeyspace/properties/default_grace_seconds/maximum",
                keyspaces::MAX_POLICY_SECONDS as u64,
            ),
            (
                "/CreateKeyspace/properties/ratelimits/maxItems",
                limits::MAX_LIMITS as u64,
            ),
            ("/RateLimitBody/properties/limit/maximum", limits::MAX_LIMIT),
            ("/RateLimitBody/properties/burst/maximum", limits::MAX_LIMIT),
            (
                "/RateLimitBody/properties/duration_ms/maximum",
                limits::MAX_DURATION_MS,
            ),
            ("/QuotaBody/properties/remaining/maximum", limits::MAX_QUOTA),
            ("/RefillBody/properties/amount/maximum", limits::MAX_QUOTA),
            (
                "/ChangeCredits/properties/amount/maximum",
                limits::MAX_QUOTA,
            ),
            (
                "/CreateKey/properties/ip_allowlist/maxItems",
                keyhaven_core::ip_allowlist::MAX_ENTRIES as u64,
            ),
            (
                "/CreateKey/properties/scopes/maxItems",
                validate::MAX_SCOPES as u64,
            ),
            (
                "/RotateKey/properties/grace_period_seconds/maximum",
                keys::MAX_GRACE_SECONDS,
            ),
            (
                "/ImportRequest/properties/keys/maxItems",
                keys::MAX_IMPORT_BATCH as u64,
            ),
            ("/VerifyRequest/properties/cost/maximum", verify::MAX_COST),
            (
                "/VerifyBatchRequest/properties/items/maxItems",
                verify::MAX_BATCH as u64,
            ),
            ("/LimitRequest/properties/cost/maximum", verify::MAX_COST),
            (
                "/LimitRequest/properties/identifier/maxLength",
                ratelimits::MAX_IDENTIFIER_CHARS as u64,
            ),
            (
                "/VerifyRequest/properties/ratelimits/maxItems",
                verify::MAX_NAMED_LIMITS as u64,
            ),
            (
                "/CreateWebhook/properties/event_types/maxItems",
                webhooks::MAX_EVENT_TYPES as u64,
            ),
        ];
        for (pointer, enforced) in checks {
            assert_eq!(
                schemas.pointer(pointer).and_then(Value::as_u64),
                Some(enforced),
                "{pointer}"
            );
        }
        assert_eq!(
            schemas
                .pointer("/CreateWebhook/properties/url/maxLength")
                .and_then(Value::as_u64),
            Some(keyhaven_service::webhooks::target::MAX_URL_LEN as u64)
        );
        let limit = doc["paths"]["/v1/keys"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()
            .clone();
        assert_eq!(limit["schema"]["maximum"], crate::pagination::MAX_PAGE);
        assert_eq!(limit["schema"]["minimum"], 1);
    }
}
