//! A room's durable side, the same for every room kind: the fencing epoch it claimed, loading
//! its state from the latest snapshot and the journal after it, appending events under that
//! epoch, and storing snapshots that trim the journal.
//!
//! A room that finds its epoch refused ([`Fenced`]) has been taken over by a newer owner: it must
//! stop without writing anything else (not even a final snapshot, which would be refused too).

use std::time::{Duration, Instant};

use persistence::{AppendRequest, Committed, JournalEntry, SideEffect, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::{RoomContext, StartError};

/// The room's epoch was refused: a newer owner holds the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenced;

/// Why an append did not happen.
#[derive(Debug)]
pub enum AppendError {
    /// A newer owner holds the room.
    Fenced,
    /// Storage failed; nothing was written.
    Failed(StoreError),
}

/// A room's journal key, epoch and snapshot bookkeeping.
#[derive(Debug)]
pub struct Durable {
    key: String,
    epoch: u64,
    snapshot_offset: u64,
    last_snapshot: Instant,
}

impl Durable {
    /// Claims the room's next epoch, then rebuilds its state: the latest snapshot (or `fresh()`
    /// when there is none), then every journal entry after it through `apply`. `offset` reads
    /// the offset a state is at. In a cluster, takes the room's lease before anything else and
    /// records the claimed epoch in it.
    ///
    /// # Errors
    /// Storage failed, or held a snapshot or an entry that does not decode; another node holds
    /// the lease ([`StartError::Lease`]).
    pub async fn open<S, E>(
        ctx: &RoomContext,
        key: String,
        fresh: impl FnOnce() -> S,
        offset: impl Fn(&S) -> u64,
        apply: impl FnMut(&mut S, u64, &E),
    ) -> Result<(Durable, S), StartError>
    where
        S: DeserializeOwned,
        E: DeserializeOwned,
    {
        // In a cluster: the lease first, so that a node that may not run the room never claims
        // an epoch (which would fence the node that runs it); given back if loading fails.
        let Some(cluster) = &ctx.cluster else {
            return Self::load(ctx, key, fresh, offset, apply).await;
        };
        cluster
            .take_lease(&key)
            .await
            .map_err(|e| StartError::Lease(e.to_string()))?;
        let loaded = Self::load(ctx, key.clone(), fresh, offset, apply).await;
        let confirmed = match &loaded {
            Ok((durable, _)) => cluster
                .confirm_lease(&key, durable.epoch)
                .await
                .map_err(|e| StartError::Lease(e.to_string())),
            Err(_) => Ok(()),
        };
        if loaded.is_err() || confirmed.is_err() {
            cluster.release_lease(&key).await;
        }
        confirmed?;
        loaded
    }

    async fn load<S, E>(
        ctx: &RoomContext,
        key: String,
        fresh: impl FnOnce() -> S,
        offset: impl Fn(&S) -> u64,
        mut apply: impl FnMut(&mut S, u64, &E),
    ) -> Result<(Durable, S), StartError>
    where
        S: DeserializeOwned,
        E: DeserializeOwned,
    {
        let store = &ctx.store;
        let epoch = store.claim_room(&key).await?;
        let mut state = match store.snapshot(&key).await? {
            Some(s) => serde_json::from_str(&s.state)
                .map_err(|e| StartError::Load(format!("snapshot: {e}")))?,
            None => fresh(),
        };
        let snapshot_offset = offset(&state);
        loop {
            let records = store.journal_since(&key, offset(&state), 1000).await?;
            if records.is_empty() {
                break;
            }
            for r in records {
                let event: E = serde_json::from_str(&r.event)
                    .map_err(|e| StartError::Load(format!("journal {}: {e}", r.seq)))?;
                apply(&mut state, u64::try_from(r.seq).unwrap_or(0), &event);
            }
        }
        // After the claim, what was just read is the whole journal: appends continue from it.
        store.set_room_head(&key, epoch, offset(&state)).await?;
        let durable = Durable {
            key,
            epoch,
            snapshot_offset,
            last_snapshot: Instant::now(),
        };
        Ok((durable, state))
    }

    /// The room's journal key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The epoch this owner claimed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Queues an append of the event at `offset` without waiting for its commit (see
    /// [`persistence::Journal::submit`]).
    ///
    /// # Errors
    /// The journal writer has stopped.
    pub async fn submit(
        &self,
        ctx: &RoomContext,
        offset: u64,
        json: String,
        effects: Vec<SideEffect>,
    ) -> Result<Committed, AppendError> {
        let request = AppendRequest {
            room: self.key.clone(),
            epoch: self.epoch,
            entries: vec![JournalEntry {
                seq: offset,
                event: json,
            }],
            effects,
        };
        ctx.journal
            .submit(request)
            .await
            .map_err(AppendError::Failed)
    }

    /// Whether a snapshot is due at `offset`: `every` events since the last, or `interval`
    /// since it with anything new.
    pub fn snapshot_due(&self, offset: u64, every: u64, interval: Option<Duration>) -> bool {
        let behind = offset.saturating_sub(self.snapshot_offset);
        behind >= every
            || (behind > 0 && interval.is_some_and(|i| self.last_snapshot.elapsed() >= i))
    }

    /// Stores `state` as the snapshot at `offset` (fenced by the epoch) and trims the journal
    /// to `retain` entries behind it. Nothing to do when the last snapshot is at `offset`; a
    /// failure other than fencing is logged and retried at the next chance.
    ///
    /// # Errors
    /// [`Fenced`]: a newer owner holds the room.
    pub async fn snapshot<S: Serialize>(
        &mut self,
        ctx: &RoomContext,
        offset: u64,
        state: &S,
    ) -> Result<(), Fenced> {
        if offset == self.snapshot_offset {
            return Ok(());
        }
        let json = match serde_json::to_string(state) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(room = %self.key, error = %e, "encoding snapshot failed");
                return Ok(());
            }
        };
        // Boxed: the store's future is ~15 KiB, and inline it would be part of every message's
        // `handle` future, which the actor builds and moves for each message.
        let put = Box::pin(ctx.store.put_snapshot(
            &self.key,
            self.epoch,
            offset,
            &json,
            ctx.config.journal_retain,
        ));
        match put.await {
            Ok(()) => {
                self.snapshot_offset = offset;
                self.last_snapshot = Instant::now();
                tracing::debug!(room = %self.key, offset, "snapshot stored");
                Ok(())
            }
            Err(StoreError::StaleEpoch) => {
                tracing::error!(room = %self.key, "snapshot refused: room fenced off by a newer owner");
                Err(Fenced)
            }
            Err(e) => {
                tracing::warn!(room = %self.key, error = %e, "snapshot failed; will retry");
                Ok(())
            }
        }
    }
}
