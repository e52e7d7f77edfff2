//! The background tasks of `dbbind serve`, owned.
//!
//! Watchers and reloaders run for the life of the process. One that ends — it returned, or it
//! panicked — leaves dbbind serving from a cache nobody updates or a certificate nobody renews,
//! so it must not end unnoticed: [`Tasks::first_ended`] reports it, and `serve` then exits with
//! a non-zero code so the kubelet restarts the pod.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};

/// Named tasks that are meant to run forever.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, String>,
}

/// A task that stopped.
#[derive(Debug, thiserror::Error)]
pub enum TaskEnded {
    #[error("background task {0:?} ended")]
    Returned(String),
    #[error("background task {name:?} panicked: {message}")]
    Panicked { name: String, message: String },
}

impl Tasks {
    pub fn new() -> Tasks {
        Tasks::default()
    }

    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name.into());
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Resolves when any task ends, saying which and how; never, while none is running.
    pub async fn first_ended(&mut self) -> TaskEnded {
        let Some(joined) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        match joined {
            Ok((id, ())) => TaskEnded::Returned(self.name(id)),
            Err(error) => {
                let name = self.name(error.id());
                let message = if error.is_panic() {
                    panic_message(error.into_panic())
                } else {
                    "cancelled".to_owned()
                };
                TaskEnded::Panicked { name, message }
            }
        }
    }

    fn name(&mut self, id: Id) -> String {
        self.names
            .remove(&id)
            .unwrap_or_else(|| "unnamed".to_owned())
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_owned(),
            Err(_) => "a non-text panic".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ended_or_panicked_task_is_reported_by_name() {
        let mut tasks = Tasks::new();
        tasks.spawn("forever", std::future::pending());
        tasks.spawn("quitter", async {});
        let ended = tasks.first_ended().await;
        assert_eq!(ended.to_string(), "background task \"quitter\" ended");

        tasks.spawn("crasher", async { panic!("boom") });
        let ended = tasks.first_ended().await;
        assert_eq!(
            ended.to_string(),
            "background task \"crasher\" panicked: boom"
        );
        assert_eq!(tasks.len(), 1);
    }
}
