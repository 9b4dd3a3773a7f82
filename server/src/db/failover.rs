//! A PostgreSQL URL that lists several hosts (`postgres://u@h1:5432,h2:5433/db`, with
//! `target_session_attrs=read-write` for the writable one), as libpq takes it for
//! failover: the pool connects to the first host that answers (and accepts writes, when
//! asked), and when its connections fail or find the server read-only (a promotion
//! moved the primary), it tries the hosts in order again and moves new connections to
//! the one that fits; connections to the old host are not handed out again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Connection};

/// The host list of one pool and which host it uses.
#[derive(Debug)]
pub struct Failover {
    /// Each host's connect options, in the URL's order.
    hosts: Vec<PgConnectOptions>,
    /// Only a server that accepts writes will do.
    read_write: bool,
    /// How long trying one host may take.
    connect_timeout: Duration,
    /// The host in use, and since when (connections older than that are not reused).
    current: Mutex<(usize, Option<Instant>)>,
    /// A search for another host is running.
    searching: AtomicBool,
}

impl Failover {
    /// The host list, or `None` for a single host.
    pub fn new(
        hosts: Vec<PgConnectOptions>,
        read_write: bool,
        connect_timeout: Duration,
    ) -> Option<Self> {
        (hosts.len() > 1).then(|| Self {
            hosts,
            read_write,
            connect_timeout,
            current: Mutex::new((0, None)),
            searching: AtomicBool::new(false),
        })
    }

    /// The first host, in order, that answers (and accepts writes when asked): its index
    /// and options, or why none did.
    pub async fn find(&self) -> Result<(usize, PgConnectOptions), String> {
        let mut reasons = Vec::new();
        for (i, options) in self.hosts.iter().enumerate() {
            let address = crate::pg::server_address(options);
            match self.fits(options).await {
                Ok(true) => return Ok((i, options.clone())),
                Ok(false) => reasons.push(format!("{address} accepts no writes")),
                Err(e) => reasons.push(format!("{address}: {e}")),
            }
        }
        Err(reasons.join("; "))
    }

    /// Whether the server at `options` answers and fits.
    async fn fits(&self, options: &PgConnectOptions) -> Result<bool, String> {
        let mut conn = tokio::time::timeout(self.connect_timeout, options.connect())
            .await
            .map_err(|_| "no answer in time".to_string())?
            .map_err(|e| crate::db::describe_driver_error(&e, None))?;
        let fits = match self.read_write {
            true => sqlx::query_scalar::<_, String>("SHOW transaction_read_only")
                .fetch_one(&mut conn)
                .await
                .map(|read_only| read_only == "off")
                .map_err(|e| crate::db::describe_driver_error(&e, None))?,
            false => true,
        };
        let _ = conn.close().await;
        Ok(fits)
    }

    /// Records that the pool starts on host `index`.
    pub fn start_at(&self, index: usize) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = (index, None);
    }

    /// Whether a connection `age` old was made before the pool moved to its host.
    pub fn is_stale(&self, age: Duration) -> bool {
        let (_, since) = *self.current.lock().unwrap_or_else(|e| e.into_inner());
        since.is_some_and(|since| age > since.elapsed())
    }

    /// Looks for the host to use again, in the background (one search at a time), and
    /// moves `pool`'s new connections there when it is another.
    pub fn reconsider(self: &std::sync::Arc<Self>, pool: &PgPool) {
        if self.searching.swap(true, Ordering::AcqRel) {
            return;
        }
        let (failover, pool) = (std::sync::Arc::clone(self), pool.clone());
        tokio::spawn(async move {
            if let Ok((index, options)) = failover.find().await {
                let moved = {
                    let mut current = failover.current.lock().unwrap_or_else(|e| e.into_inner());
                    let moved = current.0 != index;
                    if moved {
                        *current = (index, Some(Instant::now()));
                    }
                    moved
                };
                if moved {
                    log::warn!(
                        "database: now using {} (the first host of the list that fits)",
                        crate::pg::server_address(&options)
                    );
                    pool.set_connect_options(options);
                }
            }
            failover.searching.store(false, Ordering::Release);
        });
    }
}
