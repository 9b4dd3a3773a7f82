//! SQLite: the file check, whole-file creation, and a pool that follows its file.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use super::checkpoint::Checkpointer;
use super::direct::{DirectOptions, LogWatch};
use super::read::Readers;
use super::write::Writer;
use super::{DbError, FileProblem, JOURNAL_SIZE_LIMIT, OpenMode, echo_level, pool_options};
use crate::config::DbSettings;

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
    retry_short(|| check_with(path, read_header_once))
}

/// [`check_sqlite_file`] for the live database, whose descriptor stays open ([`HELD`]).
pub fn check_live_sqlite_file(path: &Path) -> Result<(), DbError> {
    retry_short(|| check_sqlite_file_once(path))
}

/// Runs `check` again (three times at most, 50 ms apart) while it finds the file short.
fn retry_short(check: impl Fn() -> Result<(), DbError>) -> Result<(), DbError> {
    let mut attempts = 0;
    loop {
        match check() {
            Err(DbError::FileInvalid {
                problem: FileProblem::Incomplete { .. },
                ..
            }) if attempts < 3 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

///
/// For the live database (the one this process's pools have open): its descriptor stays
/// open ([`HELD`]). Files this process does not hold open in SQLite (backups, staged
/// files) are checked with [`check_sqlite_file`].
pub(crate) fn check_sqlite_file_once(path: &Path) -> Result<(), DbError> {
    check_with(path, read_header)
}

/// [`check_sqlite_file_once`] with the header read by `read`.
fn check_with(path: &Path, read: fn(&Path) -> std::io::Result<Header>) -> Result<(), DbError> {
    let invalid = |problem: FileProblem| DbError::FileInvalid {
        path: path.to_path_buf(),
        problem,
    };
    // Never open what is not a regular file: opening a FIFO blocks until a writer comes.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DbError::FileMissing(path.to_path_buf()));
        }
        Ok(meta) if !meta.is_file() => return Err(invalid(not_a_file(&meta))),
        _ => {}
    }
    let (len, header) = read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DbError::FileMissing(path.to_path_buf()),
        _ => invalid(FileProblem::Unreadable(e.to_string())),
    })?;
    if len == 0 {
        return Err(invalid(FileProblem::Empty));
    }
    let Some(header) = header else {
        return Err(invalid(FileProblem::TooShort(len)));
    };
    if &header[..16] != b"SQLite format 3\0" {
        return Err(invalid(FileProblem::BadHeader));
    }
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(invalid(FileProblem::BadPageSize(page_size)));
    }
    // Page 1 is always the root of the schema table: a table b-tree page (leaf 0x0D, or
    // interior 0x05). Anything else means the page was overwritten in place, which a
    // connection that cached it would not notice, but every new one would.
    if !matches!(header[100], 0x05 | 0x0D) {
        return Err(invalid(FileProblem::Corrupt(header[100])));
    }
    let pages = u64::from(be32(28));
    // The page count in the header is valid when written by the same change as the
    // counter; without it, at least whole pages.
    let expected = if pages > 0 && be32(92) == be32(24) {
        pages * page_size
    } else {
        len.div_ceil(page_size) * page_size
    };
    // A checkpoint cut short (e.g. by a full disk) writes page 1 before the pages that
    // grow the file; the rest is still in the write-ahead log, which SQLite reads.
    let wal = wal_of(path);
    let in_wal = || std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    if len < expected && !in_wal() {
        return Err(invalid(FileProblem::Incomplete {
            have: len,
            want: expected,
        }));
    }
    Ok(())
}

/// A file's length and its first 101 bytes (`None` when it is shorter).
type Header = (u64, Option<[u8; 101]>);

/// Database files whose header this process read, each kept open for as long as the
/// process runs (the latest file at each path; one replaced at its path is let go).
/// Closing any descriptor of a file drops every POSIX lock the process holds on it,
/// SQLite's included: another process would then take the database for unused,
/// checkpoint it and delete its write-ahead log under the server's connections.
static HELD: std::sync::Mutex<Vec<(PathBuf, FileId, std::fs::File)>> =
    std::sync::Mutex::new(Vec::new());

/// The length of the file at `path` and its first 101 bytes (the database header and
/// the first byte of page 1's b-tree header; `None` when shorter), read through a
/// descriptor that stays open ([`HELD`]).
fn read_header(path: &Path) -> std::io::Result<Header> {
    use std::os::unix::fs::FileExt;
    let identity = FileId::of(&std::fs::metadata(path)?);
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    let at = match held
        .iter()
        .position(|(p, id, _)| p == path && *id == identity)
    {
        Some(at) => at,
        None => {
            let file = std::fs::File::open(path)?;
            let identity = FileId::of(&file.metadata()?);
            // The file that was at this path before is not the database any more.
            held.retain(|(p, ..)| p != path);
            held.push((path.to_path_buf(), identity, file));
            held.len() - 1
        }
    };
    let file = &held[at].2;
    let len = file.metadata()?.len();
    let mut header = [0u8; 101];
    Ok(match file.read_exact_at(&mut header, 0) {
        Ok(()) => (len, Some(header)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => (len, None),
        Err(e) => return Err(e),
    })
}

/// [`read_header`] through a descriptor opened and closed here: for a file no pool of
/// this process has open.
fn read_header_once(path: &Path) -> std::io::Result<Header> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut header = [0u8; 101];
    Ok(match file.read_exact(&mut header) {
        Ok(()) => (len, Some(header)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => (len, None),
        Err(e) => return Err(e),
    })
}

/// Why a path that exists is not a database file: a directory, a FIFO, a device, ...
pub(crate) fn not_a_file(meta: &std::fs::Metadata) -> FileProblem {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    FileProblem::NotAFile(if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO (named pipe)"
    } else if kind.is_socket() {
        "socket"
    } else {
        "device"
    })
}

/// A SQLite pool bound to the file it opened.
pub(super) struct SqliteEngine {
    path: Option<PathBuf>,
    options: SqliteConnectOptions,
    pool_options: PoolOptions<Sqlite>,
    connect_timeout: Duration,
    current: RwLock<Arc<SqliteGeneration>>,
    reopen: tokio::sync::Mutex<()>,
    pub(super) reopened: AtomicU32,
    /// Read-write: each generation switches its file to WAL before the pool opens it.
    wal: bool,
    /// How each generation's writer connection opens.
    writer: DirectOptions,
    /// Notified by the writer when the log has grown past its limit.
    pub(super) log_grew: Arc<tokio::sync::Notify>,
    /// Closed by its owner ([`super::DbPool::close`]): nothing reopens it.
    pub(super) closed: AtomicBool,
    /// Backups of this pool running now ([`super::DbPool::backing_up`]).
    pub(super) backups: AtomicUsize,
}

/// The pool, the writer connection and the checkpoints, for one file identity.
pub(super) struct SqliteGeneration {
    pub(super) pool: SqlitePool,
    pub(super) writer: Writer,
    /// Request handlers' reads (see [`super::read`]).
    pub(super) readers: Arc<Readers>,
    pub(super) checkpoints: Checkpointer,
    identity: Option<FileId>,
    /// The file was seen truncated to 0 bytes: reopen once it is valid again.
    truncated: AtomicBool,
}

impl SqliteEngine {
    pub(super) async fn open(
        settings: &DbSettings,
        path: Option<&Path>,
        mode: OpenMode,
    ) -> Result<Self, DbError> {
        let mut options = SqliteConnectOptions::new()
            .foreign_keys(true)
            .busy_timeout(settings.busy_timeout)
            .log_statements(echo_level(settings.echo));
        // No ping before handing out a connection: a SQLite connection is a file handle
        // in this process, not a socket that can go stale, and the file itself is checked
        // on every acquire (`current`). It saves a round trip through the connection's
        // worker thread per request.
        let mut pool_options = pool_options::<Sqlite>(settings).test_before_acquire(false);
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
                check_live_sqlite_file(path)?;
                if mode != OpenMode::ReadOnly {
                    check_writable(path)?;
                }
                options = options.filename(path).create_if_missing(false);
                options = match mode {
                    OpenMode::ReadOnly => options.read_only(true),
                    _ => tuned(options.synchronous(SqliteSynchronous::Normal)),
                };
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
        let wal = path.is_some() && mode != OpenMode::ReadOnly;
        let log_grew = Arc::new(tokio::sync::Notify::new());
        let log = path.filter(|_| wal).map(|path| LogWatch {
            path: wal_of(path),
            grew: Arc::clone(&log_grew),
        });
        let writer = writer_config(settings, &options, path.is_none(), mode, log);
        let generation = connect_generation(
            &pool_options,
            &options,
            &writer,
            path,
            wal,
            settings.connect_timeout,
        )
        .await?;
        Ok(Self {
            path: path.map(Path::to_path_buf),
            options,
            pool_options,
            connect_timeout: settings.connect_timeout,
            current: RwLock::new(Arc::new(generation)),
            reopen: tokio::sync::Mutex::new(()),
            reopened: AtomicU32::new(0),
            wal,
            writer,
            log_grew,
            closed: AtomicBool::new(false),
            backups: AtomicUsize::new(0),
        })
    }

    /// The pool to use now: fails if the file is gone, reopens if it was replaced.
    pub(super) async fn current(&self) -> Result<Arc<SqliteGeneration>, DbError> {
        let generation = self.read();
        let Some(path) = &self.path else {
            return Ok(generation);
        };
        let meta = std::fs::metadata(path).map_err(|_| DbError::FileMissing(path.clone()))?;
        if !meta.is_file() {
            return Err(DbError::FileInvalid {
                path: path.clone(),
                problem: not_a_file(&meta),
            });
        }
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
                problem: FileProblem::Empty,
            });
        }
        if usable(&generation) {
            return Ok(generation);
        }
        let _guard = self.reopen.lock().await;
        let generation = self.read();
        if usable(&generation) {
            return Ok(generation);
        }
        // No waiting here: a request must not block a worker while a file is copied in.
        check_sqlite_file_once(path)?;
        // Close the old file's connections first: the last one to close checkpoints and
        // deletes `<db>-wal` by path, which must not be the new file's log by then.
        if tokio::time::timeout(self.connect_timeout, generation.close())
            .await
            .is_err()
        {
            return Err(DbError::FileInvalid {
                path: path.clone(),
                problem: FileProblem::ReplacedInUse,
            });
        }
        // A log still there belongs to the file that was replaced (another process keeps
        // it open): SQLite would replay it into the new file. Wait until it is gone.
        if std::fs::metadata(wal_of(path)).is_ok_and(|m| m.len() > 0) {
            return Err(DbError::FileInvalid {
                path: path.clone(),
                problem: FileProblem::StaleLog,
            });
        }
        let fresh = connect_generation(
            &self.pool_options,
            &self.options,
            &self.writer,
            Some(path),
            self.wal,
            self.connect_timeout,
        )
        .await?;
        let fresh = Arc::new(fresh);
        *self.current.write().expect("pool lock poisoned") = Arc::clone(&fresh);
        self.reopened.fetch_add(1, Ordering::Relaxed);
        log::warn!("database file {} was replaced; reopened it", path.display());
        Ok(fresh)
    }

    fn read(&self) -> Arc<SqliteGeneration> {
        self.current.read().expect("pool lock poisoned").clone()
    }

    /// Whether the file at the path is still `generation`'s and not emptied: checked
    /// before anything other than a request's statements writes into it (a checkpoint).
    pub(super) fn still_holds(&self, generation: &SqliteGeneration) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        std::fs::metadata(path).is_ok_and(|m| {
            m.is_file() && m.len() > 0 && Some(FileId::of(&m)) == generation.identity
        }) && !generation.truncated.load(Ordering::Relaxed)
    }

    /// Whether the pool's task checkpoints the file: a file opened read-write.
    pub(super) fn checkpoints(&self) -> bool {
        self.wal
    }

    /// The current generation, without looking at the file.
    pub(super) fn snapshot(&self) -> Arc<SqliteGeneration> {
        self.read()
    }
}

impl SqliteGeneration {
    /// Closes the writer (after its transaction in progress), the checkpoints' connection
    /// and the pool.
    pub(super) async fn close(&self) {
        self.readers.close();
        self.writer.close().await;
        self.checkpoints.close().await;
        self.pool.close().await;
    }
}

/// The pragmas of every read-write connection, beyond WAL and `synchronous=NORMAL`:
/// the log is truncated back to [`JOURNAL_SIZE_LIMIT`] after checkpoints, each connection
/// caches 8 MiB of pages (SQLite's default is 2 MiB), and temporary tables and sort
/// spills stay in memory. Memory-mapped I/O (`mmap_size`) stays off: a database file
/// truncated or replaced under a mapping kills the process with SIGBUS instead of
/// failing one request, which is the outage this pool is built to survive.
fn tuned(options: SqliteConnectOptions) -> SqliteConnectOptions {
    tuning()
        .into_iter()
        .fold(options, |options, (name, value)| {
            options.pragma(name, value)
        })
}

/// The writer connection of a pool whose connections open with `options`: the same
/// file and pragmas, rusqlite's (see [`super::direct`]).
fn writer_config(
    settings: &DbSettings,
    options: &SqliteConnectOptions,
    memory: bool,
    mode: OpenMode,
    log: Option<LogWatch>,
) -> DirectOptions {
    let mut pragmas = vec![("foreign_keys", "ON".to_string())];
    if log.is_some() {
        pragmas.push(("synchronous", "NORMAL".to_string()));
        pragmas.extend(tuning());
        // The writer never checkpoints as it commits: the pool's task does (see
        // [`super::checkpoint`]). The other connections keep SQLite's automatic ones.
        pragmas.push(("wal_autocheckpoint", "0".to_string()));
    }
    DirectOptions {
        filename: options.get_filename().to_path_buf(),
        memory,
        read_only: mode == OpenMode::ReadOnly,
        pragmas,
        busy_timeout: settings.busy_timeout,
        echo: settings.echo,
        log,
        reader: false,
    }
}

/// The pragmas of [`tuned`].
fn tuning() -> [(&'static str, String); 3] {
    [
        ("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string()),
        ("cache_size", "-8192".to_string()),
        ("temp_store", "memory".to_string()),
    ]
}

/// Opens the pool (and the writer) of one file identity. With `wal`, one connection
/// first switches the file to WAL, which the file keeps: the pool's own connections set
/// no journal mode, because setting one writes page 1, and sqlx opens connections on its
/// own (`min_connections`) at any time, also into a file truncated under the server.
async fn connect_generation(
    pool_options: &PoolOptions<Sqlite>,
    options: &SqliteConnectOptions,
    writer: &DirectOptions,
    path: Option<&Path>,
    wal: bool,
    timeout: Duration,
) -> Result<SqliteGeneration, DbError> {
    let identity_of = |path: &Path| {
        std::fs::metadata(path)
            .map(|m| FileId::of(&m))
            .map_err(|_| DbError::FileMissing(path.to_path_buf()))
    };
    let before = path.map(identity_of).transpose()?;
    if let Some(path) = path.filter(|_| wal) {
        let switch = async {
            let conn = options
                .clone()
                .journal_mode(SqliteJournalMode::Wal)
                .connect()
                .await?;
            conn.close().await
        };
        // Like the pool's first connection below: another process holding the file's lock
        // past the pool's wait is a locked file.
        let wait = pool_options.get_acquire_timeout().min(timeout);
        tokio::time::timeout(wait, switch)
            .await
            .map_err(|_| DbError::FileInvalid {
                path: path.to_path_buf(),
                problem: FileProblem::Locked(wait.as_millis()),
            })??;
    }
    let pool = tokio::time::timeout(timeout, pool_options.clone().connect_with(options.clone()))
        .await
        .map_err(|_| DbError::ConnectTimeout(timeout))?
        .map_err(|e| match (e, path) {
            // The first connection waits for the file's lock (busy_timeout_ms) longer than
            // the pool waits for it (acquire_timeout_ms): another process holds the file.
            (sqlx::Error::PoolTimedOut, Some(path)) => DbError::FileInvalid {
                path: path.to_path_buf(),
                problem: FileProblem::Locked(pool_options.get_acquire_timeout().as_millis()),
            },
            (e, _) => DbError::Driver(e),
        })?;
    // Replaced again while connecting: the connections may be on either file.
    let identity = path.map(identity_of).transpose()?;
    if let Some(path) = path
        && identity != before
    {
        pool.close().await;
        return Err(DbError::FileInvalid {
            path: path.to_path_buf(),
            problem: FileProblem::ReplacedWhileOpening,
        });
    }
    Ok(SqliteGeneration {
        pool,
        writer: Writer::new(writer.clone(), pool_options.get_acquire_timeout()),
        readers: Arc::new(Readers::new(
            writer.for_reading(),
            pool_options.get_max_connections() as usize,
            same_file(path, identity),
        )),
        checkpoints: Checkpointer::new(options.clone()),
        identity,
        truncated: AtomicBool::new(false),
    })
}

/// `<db>-wal`: the write-ahead log of the database at `path`.
fn wal_of(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// Whether the file at `path` is still the one of `identity`, not emptied: checked before
/// a reader opens it by its path (in-memory databases always are).
fn same_file(path: Option<&Path>, identity: Option<FileId>) -> Box<dyn Fn() -> bool + Send + Sync> {
    let Some(path) = path.map(Path::to_path_buf) else {
        return Box::new(|| true);
    };
    Box::new(move || {
        std::fs::metadata(&path)
            .is_ok_and(|m| m.is_file() && m.len() > 0 && Some(FileId::of(&m)) == identity)
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
    let temp = new_database_file(path, settings).await?;
    match std::fs::hard_link(temp.path(), path) {
        Ok(()) => crate::durable::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(location_error(e)),
    }
    Ok(())
}

/// An empty SQLite database (WAL mode), synced, in a hidden temporary file beside
/// `path`, with the mode SQLite itself would give a new database (0644 under the usual
/// umask). Its parent directories are created first.
pub(crate) async fn new_database_file(
    path: &Path,
    settings: &DbSettings,
) -> Result<tempfile::NamedTempFile, DbError> {
    prepare_location(path)?;
    let dir = crate::durable::parent(path);
    let location_error = |e: std::io::Error| DbError::Location {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // Debris of an earlier creation (or a staged copy) that was killed.
    crate::durable::sweep(dir, &format!(".{name}."), &[crate::durable::PARTIAL]);
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
    Ok(temp)
}

/// A database this process will write: the file and its directory must both be writable
/// (SQLite writes `-wal` and `-shm` beside the file), else the driver's only word is
/// "attempt to write a readonly database". The error says whose file it is.
fn check_writable(path: &Path) -> Result<(), DbError> {
    use rustix::fs::{Access, AtFlags, CWD, accessat};
    let dir = crate::durable::parent(path);
    let checks = [
        ("file", path, Access::READ_OK | Access::WRITE_OK),
        ("directory", dir, Access::WRITE_OK | Access::EXEC_OK),
    ];
    for (what, target, access) in checks {
        if let Err(e) = accessat(CWD, target, access, AtFlags::EACCESS) {
            let owner = std::fs::metadata(target).map_or_else(
                |_| String::new(),
                |meta| {
                    use std::os::unix::fs::MetadataExt as _;
                    format!(
                        "; owned by {}, mode {:o}",
                        user_name(meta.uid()),
                        meta.mode() & 0o7777
                    )
                },
            );
            return Err(DbError::Location {
                path: target.to_path_buf(),
                reason: format!(
                    "the {what} is not writable by this process ({}{owner}); the database file and its directory must both be writable: SQLite writes -wal and -shm files beside the file",
                    std::io::Error::from(e)
                ),
            });
        }
    }
    Ok(())
}

/// `name (uid N)` from `/etc/passwd`, or `uid N`.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then_some(name)
        })
        .next()
        .map_or_else(
            || format!("uid {uid}"),
            |name| format!("{name} (uid {uid})"),
        )
}

/// Creates the parent directories of `path` and checks that they are writable.
fn prepare_location(path: &Path) -> Result<(), DbError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let location_error = |path: &Path, e: std::io::Error| DbError::Location {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(file) = dir.ancestors().find(|a| a.is_file()) {
        return Err(DbError::Location {
            path: file.to_path_buf(),
            reason: "is a file, not a directory".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| location_error(dir, e))?;
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
    {
        return Err(DbError::FileInvalid {
            path: path.to_path_buf(),
            problem: not_a_file(&meta),
        });
    }
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
