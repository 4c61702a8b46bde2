//! The API's request and answer types, with the names `docs/openapi.json` gives them.

mod admin;
mod verify;

pub use admin::{
    AuditEventView, AuditFilter, Bucket, CreateKey, CreateKeyspace, CreateOwner, CreatedKey,
    KeyFilter, KeyTotals, KeyView, KeyspaceView, List, OwnerView, Page, Quota, QuotaView,
    RateLimit, Refill, RevokeKey, RotateKey, UpdateKey, UpdateKeyspace, UpdateOwner, UsageRange,
    UsageSeries, UsageTotals,
};
pub(crate) use verify::VerifyBody;
pub use verify::{
    LimitScope, NamedCost, VerifyCode, VerifyOptions, VerifyOwner, VerifyRatelimit, VerifyResponse,
    VerifyRotation,
};
