//! The client's types against the API contract, `docs/openapi.json`: for each schema,
//! a document holding only its required fields reads into the type (so the type asks
//! no more than the contract), and a document holding every field reads and writes back
//! with exactly the schema's field names (so the type knows every field, spelled the
//! same).

use std::collections::BTreeSet;

use keyhaven_client::types::{
    AttemptView, AuditEventView, AuditFilter, Bucket, ChangeCredits, CreateKey, CreateKeyspace,
    CreateOwner, CreatePlan, CreatePortalSession, CreateRole, CreateRootKey, CreateWebhook,
    CreatedRootKey, CreatedWebhook, CreditsView, DeliveryFilter, DeliveryView, EventFilter,
    EventView, ExpiringFilter, ExpiringKeyView, ImportItem, ImportOutcome, ImportRequest,
    ImportResponse, KeyFilter, KeyTotals, KeyView, KeyspaceView, LeakResult, LeakResults,
    LimitRequest, LimitResponse, List, NamedCost, OverrideView, OwnerView, Page, PlanView,
    PortalSessionView, Quota, QuotaView, RateLimit, Refill, ReportLeaks, RevealedKey, RevokeKey,
    RevokeRootKey, RoleView, RootKeyView, RotateKey, RotateRootKey, SelfRevoke, SelfRevokedView,
    SetOverride, UpdateKey, UpdateKeyspace, UpdateOwner, UpdatePlan, UpdateRole, UpdateWebhook,
    UsageSeries, UsageTotals, VerifyBatchResponse, VerifyOwner, VerifyRatelimit, VerifyResponse,
    VerifyRotation, WebhookView,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s
}

/// A schema with its `$ref`s and `allOf`s resolved into one object schema.
fn resolve(doc: &Value, s: &Value) -> Value {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return resolve(doc, schema(doc, name));
    }
    if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for part in parts {
            let part = resolve(doc, part);
            if let Some(p) = part["properties"].as_object() {
                properties.extend(p.clone());
            }
            if let Some(r) = part["required"].as_array() {
                required.extend(r.clone());
            }
        }
        return json!({"type": "object", "properties": properties, "required": required});
    }
    s.clone()
}

/// A value of schema `s`: every field (`full`) or only the required ones.
fn sample(doc: &Value, s: &Value, full: bool) -> Value {
    let s = resolve(doc, s);
    if let Some(options) = s.get("oneOf").and_then(Value::as_array) {
        let first = options
            .iter()
            .find(|o| o.get("type") != Some(&json!("null")));
        return first.map_or(Value::Null, |o| sample(doc, o, full));
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        return values[0].clone();
    }
    let kind = match &s["type"] {
        Value::Array(kinds) => kinds
            .iter()
            .find(|k| *k != "null")
            .cloned()
            .unwrap_or(Value::Null),
        other => other.clone(),
    };
    match kind.as_str() {
        Some("string") => json!("2030-01-01T00:00:00Z"),
        Some("integer") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => match s.get("items") {
            Some(items) if full => json!([sample(doc, items, full)]),
            _ => json!([]),
        },
        Some("object") | None => {
            let required: BTreeSet<&str> = s["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            if full && s.get("properties").is_none() {
                // A free-form object (`meta`): one entry, so it is not left out as empty.
                out.insert("x".into(), json!(1));
            }
            for (name, p) in s["properties"].as_object().into_iter().flatten() {
                if full || required.contains(name.as_str()) {
                    out.insert(name.clone(), sample(doc, p, full));
                }
            }
            Value::Object(out)
        }
        Some(other) => panic!("unexpected type {other}"),
    }
}

fn fields(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

/// Checks type `T` against the schema `name` as described at the top.
fn check<T: Serialize + DeserializeOwned>(doc: &Value, name: &str) {
    let s = resolve(doc, schema(doc, name));
    let minimal = sample(doc, &s, false);
    let read: T = serde_json::from_value(minimal.clone()).unwrap_or_else(|e| {
        panic!("{name}: its required fields alone do not read: {e}\n{minimal}")
    });
    let written = serde_json::to_value(&read).unwrap();
    for required in fields(&minimal) {
        assert!(
            written.get(&required).is_some(),
            "{name}: required field {required} is not written"
        );
    }
    let full = sample(doc, &s, true);
    let read: T = serde_json::from_value(full.clone())
        .unwrap_or_else(|e| panic!("{name}: a full document does not read: {e}\n{full}"));
    let written = serde_json::to_value(&read).unwrap();
    assert_eq!(
        fields(&written),
        fields(&full),
        "{name}: field names differ from the contract"
    );
}

/// Checks an answer type that holds a secret (it reads, and is never written): the
/// schema's required fields alone read into it, a full document reads, and it reads
/// every field of the contract under the contract's name (the full document with any
/// one field of the wrong kind does not read; a field the type did not know would be
/// ignored).
fn check_secret_answer<T: DeserializeOwned>(doc: &Value, name: &str) {
    let s = resolve(doc, schema(doc, name));
    let minimal = sample(doc, &s, false);
    if let Err(e) = serde_json::from_value::<T>(minimal.clone()) {
        panic!("{name}: its required fields alone do not read: {e}\n{minimal}");
    }
    let full = sample(doc, &s, true);
    if let Err(e) = serde_json::from_value::<T>(full.clone()) {
        panic!("{name}: a full document does not read: {e}\n{full}");
    }
    for field in fields(&full) {
        let mut wrong = full.clone();
        wrong[&field] = match &full[&field] {
            Value::Object(_) => json!([true]),
            _ => json!({"unexpected": [true]}),
        };
        assert!(
            serde_json::from_value::<T>(wrong).is_err(),
            "{name}: field {field} is not read"
        );
    }
}

/// Checks that a query type writes exactly the query parameters of `method path`
/// (`every` sets each of its fields).
fn check_query<T: Serialize>(doc: &Value, method: &str, path: &str, every: &T) {
    let parameters = doc["paths"][path][method]["parameters"].as_array().unwrap();
    let expected: BTreeSet<String> = (parameters.iter())
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let written = serde_json::to_value(every).unwrap();
    assert_eq!(
        fields(&written),
        expected,
        "{method} {path}: query parameters"
    );
}

#[test]
fn verify_types_match_the_contract() {
    let doc = openapi();
    check::<VerifyResponse>(&doc, "VerifyResponse");
    check::<VerifyOwner>(&doc, "VerifyOwner");
    check::<VerifyRotation>(&doc, "VerifyRotation");
    check::<VerifyRatelimit>(&doc, "VerifyRatelimit");
    check::<NamedCost>(&doc, "NamedCost");
    // The request the client writes: the schema's fields, nothing else.
    let request = schema(&doc, "VerifyRequest");
    let allowed: BTreeSet<String> = fields(&request["properties"]);
    assert_eq!(
        allowed,
        [
            "audience",
            "client_ip",
            "cost",
            "key",
            "permissions",
            "ratelimits",
            "scopes"
        ]
        .map(String::from)
        .into_iter()
        .collect()
    );
    assert_eq!(request["required"], json!(["key"]));
}

#[test]
fn admin_types_match_the_contract() {
    let doc = openapi();
    check::<KeyspaceView>(&doc, "KeyspaceView");
    check::<CreateKeyspace>(&doc, "CreateKeyspace");
    check::<UpdateKeyspace>(&doc, "UpdateKeyspace");
    check::<KeyView>(&doc, "KeyView");
    check::<CreateKey>(&doc, "CreateKey");
    check::<UpdateKey>(&doc, "UpdateKey");
    check::<RevokeKey>(&doc, "RevokeKey");
    check::<RotateKey>(&doc, "RotateKey");
    check::<OwnerView>(&doc, "OwnerView");
    check::<CreateOwner>(&doc, "CreateOwner");
    check::<UpdateOwner>(&doc, "UpdateOwner");
    check::<RateLimit>(&doc, "RateLimitBody");
    check::<Quota>(&doc, "QuotaBody");
    check::<QuotaView>(&doc, "QuotaView");
    check::<Refill>(&doc, "RefillBody");
    check::<UsageSeries>(&doc, "UsageSeries");
    check::<Bucket>(&doc, "Bucket");
    check::<UsageTotals>(&doc, "UsageTotals");
    check::<KeyTotals>(&doc, "KeyTotals");
    check::<AuditEventView>(&doc, "AuditEventView");
    // A created key is a key view plus its plaintext.
    let created = resolve(&doc, schema(&doc, "CreatedKey"));
    let mut expected = fields(&resolve(&doc, schema(&doc, "KeyView"))["properties"]);
    expected.insert("key".into());
    assert_eq!(fields(&created["properties"]), expected);
    let full = sample(&doc, &created, true);
    let read: keyhaven_client::types::CreatedKey = serde_json::from_value(full).unwrap();
    assert_eq!(read.view.start, "2030-01-01T00:00:00Z");
}

#[test]
fn batch_create_matches_the_contract() {
    let doc = openapi();
    // The request the client writes: `keys`, each one a create request (checked above);
    // the answer: `keys`, each a created key (read as `CreatedKey`, checked above).
    let request = schema(&doc, "CreateKeysBatch");
    assert_eq!(request["required"], json!(["keys"]));
    assert_eq!(
        fields(&request["properties"]),
        BTreeSet::from(["keys".to_owned()])
    );
    assert_eq!(
        request["properties"]["keys"]["items"]["$ref"],
        "#/components/schemas/CreateKey"
    );
    let answer = schema(&doc, "CreatedKeys");
    assert_eq!(
        answer["properties"]["keys"]["items"]["$ref"],
        "#/components/schemas/CreatedKey"
    );
}

#[test]
fn batch_verify_types_match_the_contract() {
    let doc = openapi();
    check::<VerifyBatchResponse>(&doc, "VerifyBatchResponse");
    // The request the client writes: `items`, each one a verify request (checked above).
    let request = schema(&doc, "VerifyBatchRequest");
    assert_eq!(request["required"], json!(["items"]));
    assert_eq!(
        fields(&request["properties"]),
        BTreeSet::from(["items".to_owned()])
    );
    assert_eq!(
        request["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/VerifyRequest"
    );
}

#[test]
fn role_and_plan_types_match_the_contract() {
    let doc = openapi();
    check::<RoleView>(&doc, "RoleView");
    check::<CreateRole>(&doc, "CreateRole");
    check::<UpdateRole>(&doc, "UpdateRole");
    check::<List<RoleView>>(&doc, "List_RoleView");
    check::<PlanView>(&doc, "PlanView");
    check::<CreatePlan>(&doc, "CreatePlan");
    check::<UpdatePlan>(&doc, "UpdatePlan");
    check::<List<PlanView>>(&doc, "List_PlanView");
}

#[test]
fn key_lifecycle_types_match_the_contract() {
    let doc = openapi();
    check::<ChangeCredits>(&doc, "ChangeCredits");
    check::<CreditsView>(&doc, "CreditsView");
    check::<ExpiringKeyView>(&doc, "ExpiringKeyView");
    check::<List<ExpiringKeyView>>(&doc, "List_ExpiringKeyView");
    check::<ImportRequest>(&doc, "ImportRequest");
    check::<ImportItem>(&doc, "ImportItem");
    check::<ImportResponse>(&doc, "ImportResponse");
    check::<ImportOutcome>(&doc, "ImportOutcome");
    check_secret_answer::<RevealedKey>(&doc, "RevealedKey");
    check::<SelfRevoke>(&doc, "SelfRevoke");
    check::<SelfRevokedView>(&doc, "SelfRevokedView");
    check::<ReportLeaks>(&doc, "ReportLeaks");
    check::<LeakResults>(&doc, "LeakResults");
    check::<LeakResult>(&doc, "LeakResult");
    check::<CreatePortalSession>(&doc, "CreatePortalSession");
    check_secret_answer::<PortalSessionView>(&doc, "PortalSessionView");
}

#[test]
fn root_key_types_match_the_contract() {
    let doc = openapi();
    check::<RootKeyView>(&doc, "RootKeyView");
    check::<List<RootKeyView>>(&doc, "List_RootKeyView");
    check_secret_answer::<CreatedRootKey>(&doc, "CreatedRootKey");
    check::<CreateRootKey>(&doc, "CreateRootKey");
    check::<RevokeRootKey>(&doc, "RevokeRootKey");
    check::<RotateRootKey>(&doc, "RotateRootKey");
}

#[test]
fn webhook_and_event_types_match_the_contract() {
    let doc = openapi();
    check::<WebhookView>(&doc, "WebhookView");
    check::<List<WebhookView>>(&doc, "List_WebhookView");
    check_secret_answer::<CreatedWebhook>(&doc, "CreatedWebhook");
    check::<CreateWebhook>(&doc, "CreateWebhook");
    check::<UpdateWebhook>(&doc, "UpdateWebhook");
    check::<DeliveryView>(&doc, "DeliveryView");
    check::<List<DeliveryView>>(&doc, "List_DeliveryView");
    check::<AttemptView>(&doc, "AttemptView");
    check::<EventView>(&doc, "EventView");
    check::<List<EventView>>(&doc, "List_EventView");
}

#[test]
fn ratelimit_types_match_the_contract() {
    let doc = openapi();
    check::<LimitRequest>(&doc, "LimitRequest");
    check::<LimitResponse>(&doc, "LimitResponse");
    check::<SetOverride>(&doc, "SetOverride");
    check::<OverrideView>(&doc, "OverrideView");
    check::<List<OverrideView>>(&doc, "List_OverrideView");
}

#[test]
fn query_types_match_the_contract() {
    let doc = openapi();
    let some = || Some("x".to_owned());
    let page = Page {
        limit: Some(1),
        cursor: some(),
    };
    let keys = KeyFilter {
        keyspace_id: some(),
        owner_id: some(),
        sort: some(),
        search: some(),
        state: some(),
        page: page.clone(),
    };
    check_query(&doc, "get", "/v1/keys", &keys);
    let audit = AuditFilter {
        keyspace_id: some(),
        target_id: some(),
        action: some(),
        actor: some(),
        since: some(),
        until: some(),
        page: page.clone(),
    };
    check_query(&doc, "get", "/v1/audit-events", &audit);
    let expiring = ExpiringFilter {
        keyspace_id: some(),
        limit: Some(1),
    };
    check_query(&doc, "get", "/v1/keys/expiring", &expiring);
    let deliveries = DeliveryFilter {
        status: some(),
        page: page.clone(),
    };
    check_query(&doc, "get", "/v1/webhooks/{id}/deliveries", &deliveries);
    let events = EventFilter {
        kind: some(),
        key_id: some(),
        keyspace_id: some(),
        since: some(),
        until: some(),
        page: page.clone(),
    };
    check_query(&doc, "get", "/v1/events", &events);
    check_query(&doc, "get", "/v1/root-keys", &page);
    check_query(&doc, "get", "/v1/webhooks", &page);
}
