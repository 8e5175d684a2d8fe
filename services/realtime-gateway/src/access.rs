//! Who may watch and cancel an import: its owner, or an admin of its tenant. The owner and tenant
//! come from the `imports` table and never change, so they are cached.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use shared::auth::Identity;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{Error, Result, StepExt};

/// Entries kept before the cache starts over (each is a few dozen bytes).
const CACHE_LIMIT: usize = 100_000;

/// Whose an import is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// User who uploaded it.
    pub owner: String,
    /// Tenant its findings belong to.
    pub tenant: String,
}

/// Reads and caches the ownership of imports.
#[derive(Debug)]
pub struct Owners {
    db: PgPool,
    cache: Mutex<HashMap<Uuid, Arc<Ownership>>>,
}

impl Owners {
    /// An empty cache over the `imports` table of `db`.
    pub fn new(db: PgPool) -> Self {
        Owners { db, cache: Mutex::default() }
    }

    /// The import's owner and tenant, or `None` if there is no such import. Misses are not
    /// cached: the import may be created a moment later.
    pub async fn lookup(&self, id: Uuid) -> Result<Option<Arc<Ownership>>> {
        if let Some(hit) = self.cached().get(&id) {
            return Ok(Some(hit.clone()));
        }
        let row: Option<(String, String)> = sqlx::query_as("SELECT owner, tenant FROM imports WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await
            .step("reading the import's owner")?;
        Ok(row.map(|(owner, tenant)| {
            let found = Arc::new(Ownership { owner, tenant });
            let mut cache = self.cached();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(id, found.clone());
            found
        }))
    }

    /// `SESSION_NOT_FOUND` unless `who` may watch and cancel the import: someone else's import
    /// answers exactly as an unknown one, as over HTTP, so ids cannot be probed.
    pub async fn authorize(&self, who: &Identity, id: Uuid) -> Result<Arc<Ownership>> {
        let ownership = self.lookup(id).await?.ok_or(Error::NotFound(id))?;
        if who.may_access(&ownership.owner, &ownership.tenant) {
            Ok(ownership)
        } else {
            tracing::info!(import_id = %id, user = %who.user, tenant = %who.tenant, "access refused");
            Err(Error::NotFound(id))
        }
    }

    /// Records the cancel request on the import unless it has ended (`ALREADY_FINISHED`), as the
    /// HTTP cancel does.
    pub async fn record_cancel(&self, id: Uuid) -> Result<()> {
        let marked = sqlx::query(
            "UPDATE imports SET cancel_requested_at = coalesce(cancel_requested_at, now())
             WHERE id = $1 AND status NOT IN ('completed', 'error', 'cancelled')",
        )
        .bind(id)
        .execute(&self.db)
        .await
        .step("recording the cancel request")?;
        if marked.rows_affected() == 0 { Err(Error::AlreadyFinished(id)) } else { Ok(()) }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Ownership>>> {
        // Nothing panics while the lock is held, so a poisoned one still holds consistent data.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
