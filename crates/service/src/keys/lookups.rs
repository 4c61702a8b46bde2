//! What creating a key reads besides the key itself, remembered: one read each per
//! batch of creations.

use std::collections::{HashMap, HashSet};

use keyhaven_store::{Keyspace, Plan};

use super::check_owner;
use crate::actor::Actor;
use crate::error::{Result, ServiceError};
use crate::service::Service;

/// What creating keys reads besides the key itself, each read once per batch: the
/// keyspaces (as the actor may see them), plans, owners and each keyspace's role names.
#[derive(Debug, Default)]
pub(super) struct Lookups {
    keyspaces: HashMap<String, Keyspace>,
    plans: HashMap<String, Plan>,
    owners: HashSet<String>,
    roles: HashMap<String, Vec<String>>,
}

impl Lookups {
    /// The keyspace `id`, if `actor` may see it.
    pub(super) async fn keyspace(
        &mut self,
        service: &Service,
        actor: &Actor,
        id: &str,
    ) -> Result<Keyspace> {
        if let Some(known) = self.keyspaces.get(id) {
            return Ok(known.clone());
        }
        let keyspace = crate::keyspaces::visible(service.store.as_ref(), actor, id)
            .await?
            .ok_or_else(|| ServiceError::invalid("keyspace_id does not name a keyspace"))?;
        self.keyspaces.insert(id.to_owned(), keyspace.clone());
        Ok(keyspace)
    }

    /// The plan `name`.
    pub(super) async fn plan(&mut self, service: &Service, name: &str) -> Result<Plan> {
        if let Some(known) = self.plans.get(name) {
            return Ok(known.clone());
        }
        let plan = crate::plans::check_exists(service, name).await?;
        self.plans.insert(name.to_owned(), plan.clone());
        Ok(plan)
    }

    /// Fails unless `actor` may give keys an owner and `id` names one.
    pub(super) async fn check_owner(
        &mut self,
        service: &Service,
        actor: &Actor,
        id: &str,
    ) -> Result<()> {
        if !self.owners.contains(id) {
            check_owner(service.store.as_ref(), actor, Some(id)).await?;
            self.owners.insert(id.to_owned());
        }
        Ok(())
    }

    /// Fails unless each of `names` is a role of the keyspace.
    pub(super) async fn check_roles(
        &mut self,
        service: &Service,
        keyspace_id: &str,
        names: &[String],
    ) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let known = match self.roles.entry(keyspace_id.to_owned()) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let roles = service.store.list_roles(keyspace_id).await?;
                slot.insert(roles.into_iter().map(|r| r.name).collect())
            }
        };
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        crate::roles::check_among(&known, names)
    }
}
