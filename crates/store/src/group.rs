//! Group commit: concurrent writes of one kind share a transaction and its fsync.
//!
//! SQLite writes through one connection, so concurrent key creations used to queue for
//! it and pay one `synchronous=FULL` commit each. A [`GroupCommit`] hands every write to
//! one worker task instead: it takes the first waiting write, then every other one
//! already queued (up to [`MAX_GROUP`]), runs them together in one transaction (each in
//! a savepoint of its own, so one write's conflict undoes only that write), commits
//! once, and only then answers each writer. Nothing is acknowledged before its commit;
//! a lone write waits for no one (the worker never waits for company).
//!
//! The worker runs on a task of its own, so a writer that goes away (a client hanging
//! up) cannot cut a group short; its write still commits or fails with the rest.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;

/// Most writes in one transaction: bounds how long the first of them waits.
pub const MAX_GROUP: usize = 256;

/// The answer to one write of a group.
pub type Answer = Result<(), StoreError>;

/// A write waiting for its group, with where to send its answer.
pub struct Waiting<T> {
    pub write: T,
    pub answer: oneshot::Sender<Answer>,
}

/// The queue of one kind of write and its worker (see the module docs).
pub struct GroupCommit<T> {
    queue: mpsc::UnboundedSender<Waiting<T>>,
}

impl<T> std::fmt::Debug for GroupCommit<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts the worker (on the current tokio runtime). `run` writes and commits one
    /// group, answering each of its writes; it is called with one group at a time.
    pub fn start<F, Fut>(run: F) -> Self
    where
        F: Fn(Vec<Waiting<T>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Waiting<T>>();
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match waiting.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                // On a task of its own: a panic fails this group's writes (their answers
                // are dropped) and the worker goes on with the next.
                if let Err(e) = tokio::spawn(run(group)).await {
                    tracing::error!(error = %e, "a group of writes failed: {e}");
                }
            }
        });
        Self { queue }
    }

    /// Queues `write` and waits for its group's commit.
    pub async fn write(&self, write: T) -> Answer {
        let (answer, answered) = oneshot::channel();
        if self.queue.send(Waiting { write, answer }).is_err() {
            return Err(anyhow::anyhow!("the store's write queue has stopped").into());
        }
        answered
            .await
            .map_err(|_| anyhow::anyhow!("the store's write queue dropped a write"))?
    }
}
