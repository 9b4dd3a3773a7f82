//! Command-line flags: every `///` line is `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Database tasks for this workspace: `cargo xtask <command>`.
///
/// Every command reads the same configuration as the server: `Rocket.toml` (profile from
/// ROCKET_PROFILE), `.env`, ROCKET_* and DATABASE_* variables, and DATABASE_URL, which wins.
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    version,
    propagate_version = true
)]
pub struct Xtask {
    /// Read migrations from this directory instead of `migrations/` next to Rocket.toml.
    #[arg(long, global = true, value_name = "DIR")]
    pub migrations_dir: Option<PathBuf>,

    /// The task to run.
    #[command(subcommand)]
    pub command: Command,
}

/// One enum of commands; the `Db` prefix becomes the `db-` of each command name.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if missing, apply pending migrations, and verify it (idempotent).
    DbInit(DbInit),
    /// Show applied and pending migrations.
    ///
    /// Exit code: 0 up to date, 2 migrations pending (or no database yet), 3 database ahead of this code, 4 diverged (an applied migration was edited), 5 a `-- db: no-transaction` migration failed part-way (see db-resolve), 1 error, 64 bad command line.
    DbStatus(DbStatus),
    /// Create the next migration pair: `V<n>__<name>.sql` and its `V<n>__<name>.down.sql`.
    DbMigrate(DbMigrate),
    /// Apply pending migrations (all, or up to `--to`).
    DbUpgrade(DbUpgrade),
    /// Roll back the last applied migration, or `--steps N`, or down to `--to N` (asks first).
    DbDowngrade(DbDowngrade),
    /// Drop everything and recreate the database at the latest version (asks first).
    DbReset(DbReset),
    /// Take an online, consistent, verified backup.
    DbBackup(DbBackup),
    /// List backups with time, size, schema version and verification state.
    DbBackups(DbBackups),
    /// Replace the database with a verified backup (asks first).
    DbRestore(DbRestore),
    /// Write `migrations/schema.sql`, the declared schema, from the migrations (`--check`: only compare).
    ///
    /// The migrations run on a scratch database of the configured engine; its tables, columns, keys, indexes and foreign keys are written as CREATE TABLE / CREATE INDEX statements in a stable order. Exit code: 0 written or in agreement, 1 differences (printed) or an error, 64 bad command line.
    DbSchema(DbSchema),
    /// Copy every row into another database (SQLite <-> PostgreSQL), verified by per-table checksums.
    ///
    /// The target is brought to the same schema version with the migrations and written in one transaction: on any error, value that does not fit, or checksum mismatch, it is left as it was. The configured database is only read.
    DbCopy(DbCopy),
    /// Resolve a `-- db: no-transaction` migration that failed part-way: `--retry` (its statements were made idempotent; the next db-upgrade runs it again) or `--applied` (it was finished by hand).
    DbResolve(DbResolve),
    /// Adopt a database this tool did not build (by hand, diesel, sqlx, Alembic, Flyway): record migrations 1..VERSION as applied, after checking that its schema is the one they produce; nothing else is changed.
    DbBaseline(DbBaseline),
    /// Check migrations for CI: names, contiguous versions, down scripts, applied checksums, and an up/down/up round trip on a scratch database.
    DbCheck(DbCheck),
    /// Benchmark readiness, writes and backups against a naive server and the raw engine, side by side, on release builds.
    ///
    /// Builds `server` and `bench` in release mode, runs every scenario (SQLite, and PostgreSQL when BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/postgres, answers), prints the table and writes benchmarks.md (its generated section), bench.json and bench.svg. About 6 minutes; `--quick` about one.
    Bench(Bench),
}

/// `bench`.
#[derive(Debug, Args)]
pub struct Bench {
    /// A smoke run of about a minute: 256 connections only, 1/8/32 writers, a 64 MiB backup; written to target/bench unless `--out` is given.
    #[arg(long)]
    pub quick: bool,
    /// Directory for benchmarks.md, bench.json and bench.svg [default: docs, or target/bench with --quick].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Size of the database the backup scenario copies, in MiB [default: 1024, or 64 with --quick].
    #[arg(long, value_name = "MIB")]
    pub backup_mib: Option<u64>,
}

/// Flags shared by commands that destroy data.
#[derive(Debug, Args)]
pub struct Destructive {
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Allow running under the protected `production` profile.
    #[arg(long)]
    pub force: bool,
    /// Skip the automatic safety backup taken before anything changes.
    #[arg(long)]
    pub no_backup: bool,
}

/// `db-init`.
#[derive(Debug, Args)]
pub struct DbInit {}

/// `db-status`.
#[derive(Debug, Args)]
pub struct DbStatus {}

/// `db-migrate`.
#[derive(Debug, Args)]
pub struct DbMigrate {
    /// Name of the migration, in snake_case (e.g. `add_users`).
    pub name: String,
    /// Write the SQL too: what turns the schema the migrations produce into `migrations/schema.sql` (and back, in the down script).
    #[arg(long)]
    pub autogenerate: bool,
    /// With --autogenerate: write destructive steps (dropping a table or a column, narrowing a type) as SQL instead of commented out.
    #[arg(long, requires = "autogenerate")]
    pub allow_destructive: bool,
    /// `sqlite,postgres`: write one variant per engine (`V<n>__<name>.sqlite.sql` and `.postgres.sql`, with their down scripts) instead of one portable pair.
    #[arg(
        long,
        value_name = "ENGINES",
        value_delimiter = ',',
        conflicts_with = "autogenerate"
    )]
    pub engine: Vec<String>,
}

/// `db-upgrade`.
#[derive(Debug, Args)]
pub struct DbUpgrade {
    /// Stop at this version instead of the latest.
    #[arg(long, value_name = "N")]
    pub to: Option<i32>,
    /// Print the SQL that would run and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `db-downgrade`.
#[derive(Debug, Args)]
pub struct DbDowngrade {
    /// Roll back this many migrations (default 1; at least 1).
    #[arg(long, value_name = "N", conflicts_with = "to", value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: Option<u32>,
    /// Roll back every migration above version N (`--to 0` reverts everything).
    #[arg(long, value_name = "N")]
    pub to: Option<i32>,
    /// Print the down scripts that would run and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Roll back a migration whose down script has no SQL statement (comments only) anyway: its history row is deleted and nothing else changes, so what it created stays.
    #[arg(long)]
    pub accept_empty_down: bool,
    /// Confirmation, production and safety-backup flags.
    #[command(flatten)]
    pub destructive: Destructive,
}

/// `db-reset`.
#[derive(Debug, Args)]
pub struct DbReset {
    /// Confirmation, production and safety-backup flags.
    #[command(flatten)]
    pub destructive: Destructive,
}

/// `db-backup`.
#[derive(Debug, Args)]
pub struct DbBackup {
    /// Backup directory (default: `backups/` next to the database, or `databases.main.backup_dir`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Gzip a SQLite backup (`.db.gz`). By default it stays a plain SQLite file that `sqlite3` opens directly.
    #[arg(long)]
    pub compress: bool,
    /// Afterwards keep only the newest N backups of this database in the directory (and in `backup_copy_to`); default: `backup_keep`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
    /// Seconds to wait for another backup, prune or copy holding the directory's lock, then fail.
    #[arg(long, value_name = "SECS", default_value_t = server::backup::LOCK_WAIT.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub wait: u64,
}

/// `db-backups`.
#[derive(Debug, Args)]
pub struct DbBackups {
    /// Backup directory (default: as for db-backup).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `db-restore`.
#[derive(Debug, Args)]
pub struct DbRestore {
    /// The backup file (its `.json` manifest must be beside it).
    pub file: PathBuf,
    /// Confirmation, production and safety-backup flags.
    #[command(flatten)]
    pub destructive: Destructive,
    /// Restore even while a server or other sessions use the database (their open
    /// connections may keep seeing the old data until they reconnect).
    #[arg(long)]
    pub while_in_use: bool,
}

/// `db-schema`.
#[derive(Debug, Args)]
pub struct DbSchema {
    /// Change nothing: print how `migrations/schema.sql` differs from the schema the migrations produce, and exit 1 if it does.
    #[arg(long, conflicts_with = "from_db")]
    pub check: bool,
    /// Write the file from the configured database instead of the migrations (for a project that starts from a database made by hand).
    #[arg(long)]
    pub from_db: bool,
    /// Overwrite `migrations/schema.sql` even when it holds declarations no migration produces (edits by hand, which are lost); without it the command refuses and points to `db-migrate NAME --autogenerate`.
    #[arg(long, conflicts_with = "check")]
    pub force: bool,
}

/// `db-copy`.
#[derive(Debug, Args)]
pub struct DbCopy {
    /// The target: `postgres://user@host/db` or `sqlite://path` (relative to where you run the command); created when missing. Without it, DATABASE_COPY_TO from the environment or `.env`, which keeps a password off the command line.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Replace whatever the target holds (rows, another schema); asks first and takes a safety backup of the target.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Skip the safety backup of the target that --force takes.
    #[arg(long)]
    pub no_backup: bool,
    /// The target's own migrations (a project that keeps one set per engine): the target is brought to the head of this set and keeps its own history; rows are copied by table and column name, and every table or column that does not line up is listed before anything is written.
    #[arg(long, value_name = "DIR")]
    pub target_migrations: Option<std::path::PathBuf>,
}

/// `db-resolve`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["retry", "applied"])))]
pub struct DbResolve {
    /// The version of the migration that failed part-way (`db-status` shows it).
    #[arg(value_name = "VERSION")]
    pub migration: i32,
    /// Forget the failure: the next db-upgrade runs the migration again (make its statements idempotent first: IF NOT EXISTS, IF EXISTS).
    #[arg(long)]
    pub retry: bool,
    /// Record it as applied: its remaining statements were run by hand.
    #[arg(long)]
    pub applied: bool,
}

/// `db-baseline`.
#[derive(Debug, Args)]
pub struct DbBaseline {
    /// The last migration the database's schema already holds: 1..VERSION are recorded as applied, the rest stay pending.
    #[arg(value_name = "VERSION")]
    pub at: i32,
    /// Record the history although the schemas differ in the ways listed (asks first).
    #[arg(long)]
    pub accept_differences: bool,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(short, long)]
    pub yes: bool,
}

/// `db-check`.
#[derive(Debug, Args)]
pub struct DbCheck {
    /// Also run every migration up, down and up on a scratch database of this URL's engine and server (e.g. PostgreSQL while the project runs on SQLite), so that a migration claimed portable is checked on both engines. Without it, DATABASE_CHECK_ALSO from the environment or `.env`, which keeps a password off the command line.
    #[arg(long, value_name = "URL")]
    pub also: Option<String>,
}

/// A command line that is incomplete in a way clap cannot see (a value that may also come
/// from the configuration): reported like clap's own errors, with exit code 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
