//! Concurrent readiness probes share one check.
//!
//! Each request waits for a check that *started after it arrived*: it joins the next
//! check, never the one already running, so no answer is older than its request. While
//! a check runs, every request that arrives meanwhile waits for the one after it; that
//! one serves them all. Under any load the database sees at most one check at a time,
//! and a request waits at most for the end of the running check plus one more (each
//! bounded by `health_timeout_ms`; the wait itself is bounded by it too).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::DbHealth;

/// Numbers the checks in the order they start.
type Generation = u64;

/// The shared check: managed by the server, one per pool.
pub struct Coalesced {
    state: Mutex<State>,
    finished: watch::Sender<Option<(Generation, Arc<DbHealth>)>>,
}

#[derive(Default)]
struct State {
    /// The check in flight, if any.
    running: Option<Generation>,
    /// The generation the next check will get.
    next: Generation,
}

impl Default for Coalesced {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            finished: watch::Sender::new(None),
        }
    }
}

impl Coalesced {
    /// The result of a check that started after this call: joins the next one, or
    /// starts it on its own task with `check` (so a request that goes away does not
    /// cancel it for the others).
    pub async fn run<F, Fut>(self: &Arc<Self>, check: F) -> Arc<DbHealth>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = DbHealth> + Send + 'static,
    {
        let mut finished = self.finished.subscribe();
        let wanted = {
            let mut state = self.state.lock().expect("health state");
            match state.running {
                Some(running) => running + 1,
                None => self.start(&mut state, check()),
            }
        };
        loop {
            if let Some((generation, health)) = &*finished.borrow_and_update()
                && *generation >= wanted
            {
                return health.clone();
            }
            // The check that ran when this request arrived is over: start the one it
            // waits for, unless another request did.
            {
                let mut state = self.state.lock().expect("health state");
                if state.running.is_none() && state.next <= wanted {
                    self.start(&mut state, check());
                }
            }
            // Cannot fail: the sender lives as long as `self`.
            let _ = finished.changed().await;
        }
    }

    fn start<Fut>(self: &Arc<Self>, state: &mut State, check: Fut) -> Generation
    where
        Fut: Future<Output = DbHealth> + Send + 'static,
    {
        let generation = state.next;
        state.next += 1;
        state.running = Some(generation);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let health = Arc::new(check.await);
            this.state.lock().expect("health state").running = None;
            this.finished.send_replace(Some((generation, health)));
        });
        generation
    }
}
