//! Importing keys Keyhaven did not issue, in batches: the API's import
//! (`POST /v1/keys/import`) and the command line's file import write through the same
//! checks ([`Admission`]) and the same batch writer ([`write_batch`]): one transaction
//! and one audit event per keyspace. Records are built by [`crate::import`].

use keyhaven_core::PepperSet;
use keyhaven_store::{KeyRecord, Store, Timestamp};
use serde::Deserialize;
use serde_json::Map;
use utoipa::ToSchema;

use super::owner_exists;
use crate::actor::Actor;
use crate::audit;
use crate::error::{Result, ServiceError};
use crate::import::{self, ImportItem, ImportOutcome};
use crate::service::Service;

/// Most keys in one import request.
pub const MAX_IMPORT_BATCH: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// 1 to 1,000 keys.
    #[schema(min_items = 1, max_items = 1000)]
    pub keys: Vec<ImportItem>,
}

/// Why an item was skipped: its key is imported already.
const ALREADY_STORED: &str = "a key with the same lookup id or digest is already stored";

/// The checks an item needs from the store: its keyspace is one the actor may see, and
/// its owner (which only an actor not limited to keyspaces may set) exists. Answers are
/// remembered, since a batch names few keyspaces and owners.
#[derive(Debug)]
pub struct Admission {
    actor: Actor,
    keyspaces: Vec<(String, bool)>,
    owners: Vec<(String, bool)>,
}

impl Admission {
    pub fn new(actor: &Actor) -> Self {
        Self {
            actor: actor.clone(),
            keyspaces: Vec::new(),
            owners: Vec::new(),
        }
    }

    /// `Ok(Err(reason))` if an item for `keyspace_id` and `owner_id` is to be rejected.
    pub async fn check(
        &mut self,
        store: &dyn Store,
        keyspace_id: &str,
        owner_id: Option<&str>,
    ) -> Result<Result<(), String>> {
        let visible = match self.keyspaces.iter().find(|(id, _)| id == keyspace_id) {
            Some((_, known)) => *known,
            None => {
                let found = crate::keyspaces::visible(store, &self.actor, keyspace_id)
                    .await?
                    .is_some();
                self.keyspaces.push((keyspace_id.to_owned(), found));
                found
            }
        };
        if !visible {
            return Ok(Err("keyspace_id does not name a keyspace".to_owned()));
        }
        let owner_ok = match owner_id {
            None => true,
            Some(_) if self.actor.is_restricted() => false,
            Some(owner) => match self.owners.iter().find(|(id, _)| id == owner) {
                Some((_, known)) => *known,
                None => {
                    let found = owner_exists(store, owner).await?;
                    self.owners.push((owner.to_owned(), found));
                    found
                }
            },
        };
        if !owner_ok {
            return Ok(Err("owner_id does not name an existing owner".to_owned()));
        }
        Ok(Ok(()))
    }
}

/// What [`write_batch`] did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Stored under this key id.
    Imported(String),
    /// A key with the same lookup or digest is stored already (also under an older
    /// pepper): an import run again skips what it imported before.
    Skipped,
}

/// Writes admitted `records` (built by [`import::build`], checked by [`Admission`]):
/// one transaction and one `key.import` audit event per keyspace. Answers, in the order
/// of `records`, what became of each. The caller invalidates what it caches.
#[tracing::instrument(skip_all)]
pub async fn write_batch(
    store: &dyn Store,
    peppers: &PepperSet,
    actor: &Actor,
    records: Vec<KeyRecord>,
    now: Timestamp,
) -> Result<Vec<Written>> {
    let mut written = vec![Written::Skipped; records.len()];
    let mut groups: Vec<(String, Vec<usize>, Vec<KeyRecord>)> = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        if import::stored_under_older_pepper(store, &record, peppers).await? {
            continue;
        }
        match groups
            .iter_mut()
            .find(|(ks, _, _)| *ks == record.keyspace_id)
        {
            Some((_, indexes, list)) => {
                indexes.push(index);
                list.push(record);
            }
            None => groups.push((record.keyspace_id.clone(), vec![index], vec![record])),
        }
    }
    for (keyspace_id, indexes, records) in groups {
        let event = audit::event(
            actor,
            "key.import",
            ("keyspace", &keyspace_id),
            Some(&keyspace_id),
            Map::new(),
            now,
        )?;
        let inserted = store.import_keys(&records, &event).await?;
        for ((index, record), done) in indexes.into_iter().zip(records).zip(inserted) {
            if let (true, Some(slot)) = (done, written.get_mut(index)) {
                *slot = Written::Imported(record.key_id);
            }
        }
    }
    Ok(written)
}

/// Imports up to [`MAX_IMPORT_BATCH`] keys: each item is imported, skipped (already
/// stored) or rejected (with the reason), in the order of `input`.
#[tracing::instrument(skip_all)]
pub async fn import(
    service: &Service,
    actor: &Actor,
    input: ImportRequest,
) -> Result<Vec<ImportOutcome>> {
    let items = input.keys;
    if items.is_empty() || items.len() > MAX_IMPORT_BATCH {
        return Err(ServiceError::invalid(format!(
            "keys must hold 1 to {MAX_IMPORT_BATCH} items"
        )));
    }
    let now = service.clock.now();
    let store = service.store.as_ref();
    let mut admission = Admission::new(actor);
    let mut rejected: Vec<(usize, String)> = Vec::new();
    let (mut indexes, mut records) = (Vec::new(), Vec::new());
    for (index, item) in items.iter().enumerate() {
        let built = match admission
            .check(store, &item.keyspace_id, item.owner_id.as_deref())
            .await?
        {
            Ok(()) => import::build(item, &service.peppers, now),
            Err(reason) => Err(reason),
        };
        match built {
            Ok(record) => {
                indexes.push(index);
                records.push(record);
            }
            Err(reason) => rejected.push((index, reason)),
        }
    }
    let written = write_batch(store, &service.peppers, actor, records, now).await;
    service.cache.invalidate_imports();
    service.note_imported_keys();
    let outcome = |index, status: &str, key_id, reason: Option<&str>| ImportOutcome {
        index,
        status: status.to_owned(),
        key_id,
        reason: reason.map(str::to_owned),
    };
    let mut outcomes: Vec<ImportOutcome> = rejected
        .into_iter()
        .map(|(index, reason)| outcome(index, "rejected", None, Some(&reason)))
        .chain(indexes.into_iter().zip(written?).map(|(index, w)| match w {
            Written::Imported(key_id) => outcome(index, "imported", Some(key_id), None),
            Written::Skipped => outcome(index, "skipped", None, Some(ALREADY_STORED)),
        }))
        .collect();
    outcomes.sort_by_key(|o| o.index);
    Ok(outcomes)
}
