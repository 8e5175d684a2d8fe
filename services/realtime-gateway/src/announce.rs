//! `data-updated`, coalesced per tenant: at most one per [`INTERVAL`], with the counts of every
//! import completed meanwhile summed (the last value is always sent). It goes to every member of
//! the tenant, so it carries only what they all may see: the tenant's finding counts (the
//! findings are the tenant's), never whose imports they were or their ids. Without it, a burst of
//! completions in a large tenant becomes completions × sockets frames, which delays the
//! terminal events behind them and swells memory.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::json;
use shared::events::{Summary, now_ms};
use socketioxide::SocketIo;

use crate::emit::tenant_room;

/// Least time between two `data-updated` of one tenant.
pub const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Pending {
    counts: Summary,
    last_sent: Option<Instant>,
    scheduled: bool,
}

/// The tenants' pending announcements.
#[derive(Default)]
pub struct DataUpdates {
    pending: Mutex<HashMap<String, Pending>>,
}

impl DataUpdates {
    /// Records a completed import of `tenant`; the announcement goes out now or when the
    /// tenant's interval ends.
    pub fn record(self: &Arc<Self>, io: SocketIo, tenant: String, summary: &Summary) {
        let wait = {
            let mut all = self.pending.lock().expect("the data-updated lock is never poisoned");
            let p = all.entry(tenant.clone()).or_default();
            p.counts.new += summary.new;
            p.counts.updated += summary.updated;
            p.counts.resolved += summary.resolved;
            p.counts.reopened += summary.reopened;
            p.counts.unchanged += summary.unchanged;
            if p.scheduled {
                return;
            }
            p.scheduled = true;
            p.last_sent.map(|t| INTERVAL.saturating_sub(t.elapsed())).unwrap_or_default()
        };
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let payload = {
                let mut all = this.pending.lock().expect("the data-updated lock is never poisoned");
                let Some(p) = all.get_mut(&tenant) else { return };
                let payload = json!({
                    "tenant": tenant,
                    "new": p.counts.new,
                    "updated": p.counts.updated,
                    "resolved": p.counts.resolved,
                    "reopened": p.counts.reopened,
                    "unchanged": p.counts.unchanged,
                    "timestamp": now_ms(),
                });
                *p = Pending { last_sent: Some(Instant::now()), ..Pending::default() };
                payload
            };
            if let Err(err) = io.to(tenant_room(&tenant)).emit("data-updated", &payload).await {
                tracing::debug!(error = %err, "some sockets missed data-updated");
            }
        });
    }
}
