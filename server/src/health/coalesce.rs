//! Concurrent readiness probes share one check.
//!
//! The freshness rule: a request is answered by a check that started at most
//! [`JOIN_WITHIN`] (10 ms) before the request arrived, and never by one that had
//! already finished when it arrived. It joins the check in flight when that one is that
//! young, and otherwise waits for the next, which serves every request waiting for it.
//! A request that finds no check running starts one: probes one at a time always get a
//! fresh check. Under any load the database sees at most one check at a time, and a
//! request waits at most for the end of the running check plus one more (each bounded
//! by `health_timeout_ms`; the wait itself is bounded by it too).
//!
//! Why a bound and not "started after the request": on a saturated machine a check's
//! few round trips take milliseconds of scheduling delay, and waiting for the next
//! check costs one and a half checks on average instead of half of one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::DbHealth;

/// A request may be answered by a check that started this long before it arrived.
pub const JOIN_WITHIN: Duration = Duration::from_millis(10);

/// Numbers the checks in the order they start.
type Generation = u64;

/// The shared check: managed by the server, one per pool.
pub struct Coalesced {
    state: Mutex<State>,
    /// The last finished check: its generation and its result.
    finished: watch::Sender<Option<(Generation, Arc<DbHealth>)>>,
}

#[derive(Default)]
struct State {
    /// The check in flight, if any, and when it started.
    running: Option<(Generation, Instant)>,
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
    /// The result of a check that started at most [`JOIN_WITHIN`] before this call and
    /// had not finished by then: the one in flight, or the next one, which it starts on
    /// its own thread with `check` when no other request did (so a request that goes
    /// away does not cancel it for the others).
    pub async fn run<F, Fut>(self: &Arc<Self>, check: F) -> Arc<DbHealth>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = DbHealth> + Send + 'static,
    {
        let mut finished = self.finished.subscribe();
        let wanted = {
            let mut state = self.state.lock().expect("health state");
            match state.running {
                Some((running, started)) if started.elapsed() <= JOIN_WITHIN => running,
                Some((running, _)) => running + 1,
                None => self.start(&mut state, check()),
            }
        };
        loop {
            if let Some((generation, health)) = &*finished.borrow_and_update()
                && *generation >= wanted
            {
                return health.clone();
            }
            // The check that ran when this request arrived, too old to join, is over:
            // start the one it waits for, unless another request did.
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
        let (generation, started) = (state.next, Instant::now());
        state.next += 1;
        state.running = Some((generation, started));
        let this = Arc::clone(self);
        // The check runs on a thread of its own (from the blocking pool), not as one more
        // task among the requests: under load, a task that awaits the database would wait
        // behind hundreds of ready requests after every round trip, and every request
        // waits for the check.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let health = Arc::new(runtime.block_on(check));
            this.state.lock().expect("health state").running = None;
            this.finished.send_replace(Some((generation, health)));
        });
        generation
    }
}
