//! The API's request and answer types, with the names `docs/openapi.json` gives them.

mod access;
mod admin;
mod leaks;
mod lifecycle;
mod portal;
mod ratelimits;
mod root_keys;
mod verify;
mod webhooks;

pub use access::{CreatePlan, CreateRole, PlanView, RoleView, UpdatePlan, UpdateRole};
pub use admin::{
    AuditEventView, AuditFilter, Bucket, CreateKey, CreateKeyspace, CreateOwner, CreatedKey,
    KeyFilter, KeyTotals, KeyView, KeyspaceView, List, OwnerView, Page, Quota, QuotaView,
    RateLimit, Refill, RevokeKey, RotateKey, UpdateKey, UpdateKeyspace, UpdateOwner, UsageRange,
    UsageSeries, UsageTotals,
};
pub use leaks::{LeakLabel, LeakResult, LeakResults, ReportLeaks, SelfRevoke, SelfRevokedView};
pub use lifecycle::{
    ChangeCredits, CreditOp, CreditsView, ExpiringFilter, ExpiringKeyView, ImportItem,
    ImportOutcome, ImportRequest, ImportResponse, RevealedKey,
};
pub use portal::{CreatePortalSession, PortalSessionView};
pub use ratelimits::{LimitRequest, LimitResponse, OverrideView, SetOverride};
pub use root_keys::{CreateRootKey, CreatedRootKey, RevokeRootKey, RootKeyView, RotateRootKey};
pub use verify::{
    LimitScope, NamedCost, VerifyBatchResponse, VerifyCode, VerifyOptions, VerifyOwner,
    VerifyRatelimit, VerifyResponse, VerifyRotation,
};
pub(crate) use verify::{VerifyBatchBody, VerifyBody};
pub use webhooks::{
    AttemptView, CreateWebhook, CreatedWebhook, DeliveryFilter, DeliveryView, EventFilter,
    EventView, UpdateWebhook, WebhookView,
};
