//! The connection pool: one type for SQLite and PostgreSQL, chosen at run time by the URL.
//!
//! SQLite connections run in WAL mode with `synchronous=NORMAL` and foreign keys on;
//! write transactions start with `BEGIN IMMEDIATE` (see [`DbConn::begin_write`]).
//! A SQLite pool watches the identity of its file: when the file at the path is
//! removed, acquiring fails (an outage, never a fresh empty database); when it is
//! replaced, the pool reopens on the new file once that file is a complete SQLite
//! database. Nothing is ever written to a file that is not one already (an empty file, a
//! file half copied in): a new database is only created whole, at startup or by
//! `db-init`, by linking a finished file into place.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::postgres::{PgPool, Postgres};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Transaction};

use crate::config::DbSettings;
use crate::url::{DatabaseUrl, DbKind, mask_url};

/// A database failure, with passwords masked.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The SQLite file was removed while the server runs.
    #[error("database file {0} is missing; restore it or run `cargo xtask db-init`")]
    FileMissing(PathBuf),
    /// The file at the database path is not (yet) a complete SQLite database.
    #[error("database file {path} {reason}; nothing was written to it")]
    FileInvalid {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The directory of the SQLite file cannot be created or written.
    #[error("cannot use database location {path}: {reason}")]
    Location {
        /// The directory or file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The database server cannot be reached.
    #[error("cannot connect to the database server at {server}: {reason}")]
    Unreachable {
        /// `host:port` or the socket, never credentials.
        server: String,
        /// The operating system's reason (connection refused, no route, ...).
        reason: String,
    },
    /// No connection within the time bound.
    #[error("timed out after {0:?} connecting to the database")]
    ConnectTimeout(Duration),
    /// The configuration handed to the pool is invalid.
    #[error("{0}")]
    Config(String),
    /// An error from the driver.
    #[error("{}", describe_driver_error(.0, None))]
    Driver(#[from] sqlx::Error),
}

/// A driver error as a user reads it, passwords masked: for PostgreSQL the server's
/// message, the line of `script` it points at (when the server reports a position), its
/// hint, and the setting to raise for a timeout, instead of sqlx's "at line <n>" (a line
/// of the server's own C source).
pub fn describe_driver_error(error: &sqlx::Error, script: Option<&str>) -> String {
    let sqlx::Error::Database(db) = error else {
        return mask_url(&error.to_string());
    };
    let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else {
        return mask_url(&db.to_string());
    };
    let mut text = pg.message().to_string();
    if let (Some(script), Some(sqlx::postgres::PgErrorPosition::Original(position))) =
        (script, pg.position())
    {
        let line = script
            .chars()
            .take(position.saturating_sub(1))
            .filter(|c| *c == '\n')
            .count()
            + 1;
        text.push_str(&format!(" (at line {line})"));
    }
    if let Some(hint) = pg.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    match pg.code() {
        // lock_not_available: lock_timeout expired.
        "55P03" => text.push_str(
            "; another session holds a lock this needs: stop it, or raise databases.main.lock_timeout_ms (DATABASE_LOCK_TIMEOUT_MS)",
        ),
        // query_canceled, here by statement_timeout.
        "57014" => text.push_str(
            "; raise databases.main.statement_timeout_ms (DATABASE_STATEMENT_TIMEOUT_MS) for long statements",
        ),
        _ => {}
    }
    mask_url(&text)
}

/// Whether opening may create the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Startup and `db-init`: create the file and its directories if missing.
    Create,
    /// Everything else: a missing database is an error.
    MustExist,
}

/// Pool statistics for health output.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct PoolStats {
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Upper bound.
    pub max: u32,
    /// SQLite: how often the pool reopened because the file at its path was replaced.
    pub reopened: u32,
}

/// The pool, for either engine.
pub struct DbPool {
    engine: Engine,
    max_connections: u32,
}

enum Engine {
    Sqlite(Box<SqliteEngine>),
    Postgres(PgPool),
}

/// A pooled connection to either engine.
pub enum DbConn {
    /// A SQLite connection.
    Sqlite(PoolConnection<Sqlite>),
    /// A PostgreSQL connection.
    Postgres(PoolConnection<Postgres>),
}

/// A transaction on either engine.
pub enum DbTx<'c> {
    /// A SQLite transaction.
    Sqlite(Transaction<'c, Sqlite>),
    /// A PostgreSQL transaction.
    Postgres(Transaction<'c, Postgres>),
}

impl DbPool {
    /// Opens the pool described by `settings` and checks one connection.
    pub async fn open(settings: &DbSettings, mode: OpenMode) -> Result<Self, DbError> {
        let engine = match &settings.url {
            DatabaseUrl::Sqlite { path } => Engine::Sqlite(Box::new(
                SqliteEngine::open(settings, Some(path), mode).await?,
            )),
            DatabaseUrl::SqliteMemory => {
                Engine::Sqlite(Box::new(SqliteEngine::open(settings, None, mode).await?))
            }
            DatabaseUrl::Postgres { url } => Engine::Postgres(open_postgres(settings, url).await?),
        };
        Ok(Self {
            engine,
            max_connections: settings.max_connections,
        })
    }

    /// The engine behind this pool.
    pub fn kind(&self) -> DbKind {
        match self.engine {
            Engine::Sqlite(_) => DbKind::Sqlite,
            Engine::Postgres(_) => DbKind::Postgres,
        }
    }

    /// Takes a connection, waiting at most the configured acquire timeout.
    pub async fn acquire(&self) -> Result<DbConn, DbError> {
        match &self.engine {
            Engine::Sqlite(engine) => Ok(DbConn::Sqlite(engine.current().await?.acquire().await?)),
            Engine::Postgres(pool) => Ok(DbConn::Postgres(pool.acquire().await?)),
        }
    }

    /// Current pool statistics.
    pub fn stats(&self) -> PoolStats {
        let (size, idle, reopened) = match &self.engine {
            Engine::Sqlite(engine) => {
                let pool = engine.snapshot();
                let reopened = engine.reopened.load(Ordering::Relaxed);
                (pool.size(), pool.num_idle(), reopened)
            }
            Engine::Postgres(pool) => (pool.size(), pool.num_idle(), 0),
        };
        PoolStats {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.max_connections,
            reopened,
        }
    }

    /// Waits for connections in use to come back, then closes all of them.
    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite(engine) => engine.snapshot().close().await,
            Engine::Postgres(pool) => pool.close().await,
        }
    }
}

impl DbConn {
    /// The engine of this connection.
    pub fn kind(&self) -> DbKind {
        match self {
            Self::Sqlite(_) => DbKind::Sqlite,
            Self::Postgres(_) => DbKind::Postgres,
        }
    }

    /// One real round trip: `SELECT 1`.
    pub async fn ping(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(c) => sqlx::query("SELECT 1").execute(&mut **c).await.map(drop),
            Self::Postgres(c) => sqlx::query("SELECT 1").execute(&mut **c).await.map(drop),
        }
    }

    /// Starts a transaction that will write.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up front, so a busy
    /// database makes the transaction wait for the busy timeout instead of failing with
    /// `SQLITE_BUSY` at its first write, as a deferred transaction that upgrades would.
    pub async fn begin_write(&mut self) -> Result<DbTx<'_>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(c) => DbTx::Sqlite(c.begin_with("BEGIN IMMEDIATE").await?),
            Self::Postgres(c) => DbTx::Postgres(c.begin().await?),
        })
    }

    /// Runs a script of one or more statements outside any transaction.
    pub async fn execute_script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Self::Sqlite(c) => sqlx::raw_sql(sql).execute(&mut **c).await.map(drop),
            Self::Postgres(c) => sqlx::raw_sql(sql).execute(&mut **c).await.map(drop),
        }
    }
}

impl DbTx<'_> {
    /// Runs a script of one or more statements inside this transaction.
    pub async fn execute_script(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Self::Sqlite(tx) => sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop),
            Self::Postgres(tx) => sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop),
        }
    }

    /// Opens a savepoint: a nested transaction that can fail alone.
    pub async fn savepoint(&mut self) -> Result<DbTx<'_>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(tx) => DbTx::Sqlite(tx.begin().await?),
            Self::Postgres(tx) => DbTx::Postgres(tx.begin().await?),
        })
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(tx) => tx.rollback().await,
            Self::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// Opens a PostgreSQL pool whose connections carry the statement and lock timeouts.
async fn open_postgres(settings: &DbSettings, url: &url::Url) -> Result<PgPool, DbError> {
    let millis = |d: Duration| d.as_millis().to_string();
    let options = crate::pg::connect_options(url)?
        .options([
            ("statement_timeout", millis(settings.statement_timeout)),
            ("lock_timeout", millis(settings.lock_timeout)),
            // A session idle inside a transaction holds locks: bound it like a statement.
            (
                "idle_in_transaction_session_timeout",
                millis(settings.statement_timeout),
            ),
        ])
        .log_statements(echo_level(settings.echo));
    // One direct connection first: its error is the real one ("connection refused",
    // "password authentication failed"), where the pool only reports that it timed out.
    let first = tokio::time::timeout(settings.connect_timeout, options.connect())
        .await
        .map_err(|_| DbError::ConnectTimeout(settings.connect_timeout))?
        .map_err(|e| match e {
            sqlx::Error::Io(io) => DbError::Unreachable {
                server: crate::pg::server_address(&options),
                reason: io.to_string(),
            },
            other => DbError::Driver(other),
        })?;
    let _ = first.close().await;
    tokio::time::timeout(
        settings.connect_timeout,
        pool_options(settings).connect_with(options),
    )
    .await
    .map_err(|_| DbError::ConnectTimeout(settings.connect_timeout))?
    .map_err(DbError::from)
}

fn echo_level(echo: bool) -> log::LevelFilter {
    if echo {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Off
    }
}

fn pool_options<DB: sqlx::Database>(settings: &DbSettings) -> PoolOptions<DB> {
    PoolOptions::new()
        .min_connections(settings.min_connections)
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
}

/// Identity of a file: replaced files get a new one, even at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Checks that `path` holds a complete SQLite database before anything opens it for
/// writing: the header's magic and page size, and (when the header records it) a file as
/// long as the database it describes, so a file still being copied in is not picked up
/// half-way. A live database can look short for a moment while a checkpoint grows it, so
/// a short file is looked at again before it is called incomplete.
pub fn check_sqlite_file(path: &Path) -> Result<(), DbError> {
    let mut attempts = 0;
    loop {
        match check_sqlite_file_once(path) {
            Err(DbError::FileInvalid { reason, .. })
                if reason.starts_with("is incomplete") && attempts < 3 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn check_sqlite_file_once(path: &Path) -> Result<(), DbError> {
    use std::io::Read;
    let invalid = |reason: String| DbError::FileInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DbError::FileMissing(path.to_path_buf()),
        _ => invalid(format!("cannot be read ({e})")),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| invalid(format!("cannot be read ({e})")))?;
    if meta.len() == 0 {
        return Err(invalid("is empty (0 bytes)".into()));
    }
    let mut header = [0u8; 100];
    file.read_exact(&mut header).map_err(|_| {
        invalid(format!(
            "is not a SQLite database ({} bytes, too short)",
            meta.len()
        ))
    })?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(invalid("is not a SQLite database (bad header)".into()));
    }
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(invalid(format!(
            "is not a SQLite database (bad page size {page_size})"
        )));
    }
    let pages = u64::from(be32(28));
    // The page count in the header is valid when written by the same change as the
    // counter; without it, at least whole pages.
    let expected = if pages > 0 && be32(92) == be32(24) {
        pages * page_size
    } else {
        meta.len().div_ceil(page_size) * page_size
    };
    if meta.len() < expected {
        return Err(invalid(format!(
            "is incomplete ({} of {expected} bytes; still being copied?)",
            meta.len()
        )));
    }
    Ok(())
}

/// A SQLite pool bound to the file it opened.
struct SqliteEngine {
    path: Option<PathBuf>,
    options: SqliteConnectOptions,
    pool_options: PoolOptions<Sqlite>,
    connect_timeout: Duration,
    current: RwLock<Arc<SqliteGeneration>>,
    reopen: tokio::sync::Mutex<()>,
    reopened: AtomicU32,
}

/// The pool for one file identity.
struct SqliteGeneration {
    pool: SqlitePool,
    identity: Option<FileId>,
    /// The file was seen truncated to 0 bytes: reopen once it is valid again.
    truncated: std::sync::atomic::AtomicBool,
}

impl SqliteEngine {
    async fn open(
        settings: &DbSettings,
        path: Option<&Path>,
        mode: OpenMode,
    ) -> Result<Self, DbError> {
        let mut options = SqliteConnectOptions::new()
            .foreign_keys(true)
            .busy_timeout(settings.busy_timeout)
            .log_statements(echo_level(settings.echo));
        let mut pool_options = pool_options::<Sqlite>(settings);
        match path {
            Some(path) => {
                if mode == OpenMode::Create {
                    prepare_location(path)?;
                    // Debris of a creation or restore that was killed.
                    let dir = crate::durable::parent(path);
                    let name = path.file_name().unwrap_or_default().to_string_lossy();
                    crate::durable::sweep(dir, &format!(".{name}."), &[crate::durable::PARTIAL]);
                    crate::durable::sweep(dir, ".", &[crate::durable::RESTORING]);
                    if !path.exists() {
                        create_database(path, settings).await?;
                    }
                }
                check_sqlite_file(path)?;
                options = options
                    .filename(path)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .create_if_missing(false);
            }
            None => {
                // One shared in-memory database lives as long as one connection does:
                // keep one open for the life of the pool.
                options = SqliteConnectOptions::from_str("sqlite::memory:")?
                    .foreign_keys(true)
                    .busy_timeout(settings.busy_timeout)
                    .log_statements(echo_level(settings.echo));
                pool_options = pool_options
                    .min_connections(settings.min_connections.max(1))
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
        }
        let generation =
            connect_generation(&pool_options, &options, path, settings.connect_timeout).await?;
        Ok(Self {
            path: path.map(Path::to_path_buf),
            options,
            pool_options,
            connect_timeout: settings.connect_timeout,
            current: RwLock::new(Arc::new(generation)),
            reopen: tokio::sync::Mutex::new(()),
            reopened: AtomicU32::new(0),
        })
    }

    /// The pool to use now: fails if the file is gone, reopens if it was replaced.
    async fn current(&self) -> Result<SqlitePool, DbError> {
        let generation = self.read();
        let Some(path) = &self.path else {
            return Ok(generation.pool.clone());
        };
        let meta = std::fs::metadata(path).map_err(|_| DbError::FileMissing(path.clone()))?;
        let on_disk = FileId::of(&meta);
        let usable = |g: &SqliteGeneration| {
            Some(on_disk) == g.identity && !g.truncated.load(Ordering::Relaxed)
        };
        if meta.len() == 0 {
            // Truncated in place: never hand out a connection that would write into it.
            if Some(on_disk) == generation.identity {
                generation.truncated.store(true, Ordering::Relaxed);
            }
            return Err(DbError::FileInvalid {
                path: path.clone(),
                reason: "is empty (0 bytes)".into(),
            });
        }
        if usable(&generation) {
            return Ok(generation.pool.clone());
        }
        let _guard = self.reopen.lock().await;
        let generation = self.read();
        if usable(&generation) {
            return Ok(generation.pool.clone());
        }
        // No waiting here: a request must not block a worker while a file is copied in.
        check_sqlite_file_once(path)?;
        // Close the old file's connections first: the last one to close checkpoints and
        // deletes `<db>-wal` by path, which must not be the new file's log by then.
        if tokio::time::timeout(self.connect_timeout, generation.pool.close())
            .await
            .is_err()
        {
            return Err(DbError::FileInvalid {
                path: path.clone(),
                reason:
                    "was replaced while requests still use the old file; retrying once they finish"
                        .into(),
            });
        }
        // A log still there belongs to the file that was replaced (another process keeps
        // it open): SQLite would replay it into the new file. Wait until it is gone.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(DbError::FileInvalid {
                path: path.clone(),
                reason: format!(
                    "was replaced, and the old file's write-ahead log is still beside it (SQLite would replay it into the new file); remove {0}-wal and {0}-shm, or restore with `cargo xtask db-restore`",
                    path.display()
                ),
            });
        }
        let fresh = connect_generation(
            &self.pool_options,
            &self.options,
            Some(path),
            self.connect_timeout,
        )
        .await?;
        let pool = fresh.pool.clone();
        *self.current.write().expect("pool lock poisoned") = Arc::new(fresh);
        self.reopened.fetch_add(1, Ordering::Relaxed);
        log::warn!("database file {} was replaced; reopened it", path.display());
        Ok(pool)
    }

    fn read(&self) -> Arc<SqliteGeneration> {
        self.current.read().expect("pool lock poisoned").clone()
    }

    fn snapshot(&self) -> SqlitePool {
        self.read().pool.clone()
    }
}

async fn connect_generation(
    pool_options: &PoolOptions<Sqlite>,
    options: &SqliteConnectOptions,
    path: Option<&Path>,
    timeout: Duration,
) -> Result<SqliteGeneration, DbError> {
    let identity_of = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| FileId::of(&m))
            .map_err(|_| DbError::FileMissing(path.to_path_buf()))
    };
    let before = path.map(identity_of).transpose()?;
    let pool = tokio::time::timeout(timeout, pool_options.clone().connect_with(options.clone()))
        .await
        .map_err(|_| DbError::ConnectTimeout(timeout))??;
    // Replaced again while connecting: the connections may be on either file.
    let identity = path.map(identity_of).transpose()?;
    if let Some(path) = path
        && identity != before
    {
        pool.close().await;
        return Err(DbError::FileInvalid {
            path: path.to_path_buf(),
            reason: "was replaced while it was being opened; retrying".into(),
        });
    }
    Ok(SqliteGeneration {
        pool,
        identity,
        truncated: std::sync::atomic::AtomicBool::new(false),
    })
}

/// Creates a new, empty SQLite database at `path` whole: initialized (WAL mode) in a
/// temporary file beside it, synced, then hard-linked into place, which fails harmlessly
/// when another starter created it first. No process ever sees a half-made file.
async fn create_database(path: &Path, settings: &DbSettings) -> Result<(), DbError> {
    let dir = crate::durable::parent(path);
    let location_error = |e: std::io::Error| DbError::Location {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // The mode SQLite itself would give a new database (0644 under the usual umask).
    let temp = crate::durable::temp_with_mode(dir, &name, crate::durable::PARTIAL, 0o666)
        .map_err(location_error)?;
    let conn = SqliteConnectOptions::new()
        .filename(temp.path())
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(settings.busy_timeout)
        .disable_statement_logging()
        .connect()
        .await?;
    conn.close().await?;
    temp.as_file().sync_all().map_err(location_error)?;
    match std::fs::hard_link(temp.path(), path) {
        Ok(()) => crate::durable::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(location_error(e)),
    }
    Ok(())
}

/// Creates the parent directories of `path` and checks that they are writable.
fn prepare_location(path: &Path) -> Result<(), DbError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let location_error = |path: &Path, e: std::io::Error| DbError::Location {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| location_error(dir, e))?;
    if path.exists() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| location_error(path, e))?;
    } else {
        tempfile::NamedTempFile::new_in(dir).map_err(|e| location_error(dir, e))?;
    }
    Ok(())
}
