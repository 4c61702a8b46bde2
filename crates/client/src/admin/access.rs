//! `/v1/keyspaces/{id}/roles` and `/v1/plans`.

use reqwest::Method;

use super::segment;
use crate::client::Client;
use crate::error::Result;
use crate::types::{CreatePlan, CreateRole, List, PlanView, RoleView, UpdatePlan, UpdateRole};

/// `/v1/keyspaces/{id}/roles`: a keyspace's roles, by name.
#[derive(Debug, Clone, Copy)]
pub struct Roles<'c>(pub(super) &'c Client);

impl Roles<'_> {
    pub async fn create(&self, keyspace_id: &str, input: &CreateRole) -> Result<RoleView> {
        let path = format!("/v1/keyspaces/{}/roles", segment(keyspace_id));
        (self.0)
            .call("roles", Method::POST, &path, None, Some(input))
            .await
    }

    /// Every role of the keyspace (one page: a keyspace holds at most 1,000).
    pub async fn list(&self, keyspace_id: &str) -> Result<List<RoleView>> {
        let path = format!("/v1/keyspaces/{}/roles", segment(keyspace_id));
        self.0.call("roles", Method::GET, &path, None, None).await
    }

    pub async fn get(&self, keyspace_id: &str, name: &str) -> Result<RoleView> {
        let path = role_path(keyspace_id, name);
        self.0.call("roles", Method::GET, &path, None, None).await
    }

    /// Changes a role; every key with it holds the new permissions.
    pub async fn update(
        &self,
        keyspace_id: &str,
        name: &str,
        change: &UpdateRole,
    ) -> Result<RoleView> {
        let path = role_path(keyspace_id, name);
        (self.0)
            .call("roles", Method::PATCH, &path, None, Some(change))
            .await
    }

    pub async fn delete(&self, keyspace_id: &str, name: &str) -> Result<()> {
        let path = role_path(keyspace_id, name);
        (self.0)
            .call_empty("roles", Method::DELETE, &path, None)
            .await
    }
}

fn role_path(keyspace_id: &str, name: &str) -> String {
    format!(
        "/v1/keyspaces/{}/roles/{}",
        segment(keyspace_id),
        segment(name)
    )
}

/// `/v1/plans`: the deployment's plans, by name.
#[derive(Debug, Clone, Copy)]
pub struct Plans<'c>(pub(super) &'c Client);

impl Plans<'_> {
    pub async fn create(&self, input: &CreatePlan) -> Result<PlanView> {
        (self.0)
            .call("plans", Method::POST, "/v1/plans", None, Some(input))
            .await
    }

    /// Every plan (one page).
    pub async fn list(&self) -> Result<List<PlanView>> {
        (self.0)
            .call("plans", Method::GET, "/v1/plans", None, None)
            .await
    }

    pub async fn get(&self, name: &str) -> Result<PlanView> {
        let path = format!("/v1/plans/{}", segment(name));
        self.0.call("plans", Method::GET, &path, None, None).await
    }

    /// Changes a plan; every key and owner on it follows.
    pub async fn update(&self, name: &str, change: &UpdatePlan) -> Result<PlanView> {
        let path = format!("/v1/plans/{}", segment(name));
        (self.0)
            .call("plans", Method::PATCH, &path, None, Some(change))
            .await
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        let path = format!("/v1/plans/{}", segment(name));
        (self.0)
            .call_empty("plans", Method::DELETE, &path, None)
            .await
    }
}
