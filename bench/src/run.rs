//! One whole run: every scenario in turn, then the report's three files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::Connection;

use crate::process::ServerProcess;
use crate::report::{Engine, Report, WritePoint};
use crate::{app, backup, histories, progress, readiness, writes};

/// What `bench` was asked to do.
pub struct Options {
    /// Fewer points, shorter loads.
    pub quick: bool,
    /// Where the report goes.
    pub out: PathBuf,
    /// The PostgreSQL server's URL.
    pub postgres: String,
    /// The backup scenario's database size.
    pub backup_mib: u64,
}

impl Options {
    fn connections(&self) -> &'static [usize] {
        if self.quick {
            &[256]
        } else {
            &[16, 64, 256, 1024]
        }
    }

    /// The application's endpoints: at these concurrencies, each load this long, in
    /// this many alternating rounds.
    fn app_load(&self) -> (&'static [usize], Duration, usize) {
        if self.quick {
            (&[256], Duration::from_secs(1), 1)
        } else {
            (&[16, 64, 256], Duration::from_secs(2), 2)
        }
    }

    fn writers(&self) -> &'static [usize] {
        if self.quick {
            &[1, 8, 32]
        } else {
            &[1, 2, 4, 8, 16, 32, 64]
        }
    }

    /// One load's length, and how many alternating rounds.
    fn load(&self) -> (Duration, usize) {
        if self.quick {
            (Duration::from_secs(1), 1)
        } else {
            (Duration::from_secs(3), 2)
        }
    }

    fn write_duration(&self) -> Duration {
        Duration::from_millis(if self.quick { 500 } else { 2_000 })
    }
}

/// Runs every scenario and writes `benchmarks.md`, `bench.json` and `bench.svg`.
pub async fn all(options: Options) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a scratch directory")?;
    let postgres = Postgres::connect(&options.postgres).await;
    if let Err(e) = &postgres {
        progress(&format!("PostgreSQL scenarios skipped: {e:#}"));
    }
    let postgres = postgres.ok();
    let mut report = Report {
        date: now(),
        quick: options.quick,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        sqlite_version: rusqlite::version().to_string(),
        postgres_version: postgres.as_ref().map(|p| p.version.clone()),
        readiness: Vec::new(),
        app: Vec::new(),
        writes: Vec::new(),
        backup: None,
        histories: Vec::new(),
    };

    progress("readiness, sqlite");
    let sqlite = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    report.readiness.push(Engine {
        engine: "sqlite",
        points: readiness_on(
            &options,
            dir.path(),
            &sqlite("app.db"),
            &sqlite("anchor.db"),
        )
        .await?,
    });
    if let Some(pg) = &postgres {
        progress("readiness, postgres");
        let (ours, anchor) = (pg.create("server").await?, pg.create("anchor").await?);
        report.readiness.push(Engine {
            engine: "postgres",
            points: readiness_on(&options, dir.path(), &ours, &anchor).await?,
        });
    }

    progress("application (the notes example), sqlite");
    report.app.push(Engine {
        engine: "sqlite",
        points: app_on(
            &options,
            dir.path(),
            &sqlite("notes.db"),
            &sqlite("anchor-notes.db"),
        )
        .await?,
    });
    if let Some(pg) = &postgres {
        progress("application (the notes example), postgres");
        let (ours, anchor) = (pg.create("notes").await?, pg.create("anchor_notes").await?);
        report.app.push(Engine {
            engine: "postgres",
            points: app_on(&options, dir.path(), &ours, &anchor).await?,
        });
    }

    progress("writes, sqlite");
    report.writes.push(Engine {
        engine: "sqlite",
        points: sqlite_writes(&options, dir.path()).await?,
    });
    if let Some(pg) = &postgres {
        progress("writes, postgres");
        let (ours, naive) = (pg.create("writes").await?, pg.create("writes_sqlx").await?);
        report.writes.push(Engine {
            engine: "postgres",
            points: pg_writes(&options, dir.path(), &ours, &naive).await?,
        });
    }

    progress(&format!("backup, sqlite ({} MiB)", options.backup_mib));
    let database = dir.path().join("backup.db");
    backup::fill(&database, options.backup_mib)?;
    report.backup = Some(backup::measure(&database, dir.path()).await?);

    progress(&format!(
        "db-check of {} migrations, sqlite",
        histories::MIGRATIONS
    ));
    report.histories.push(Engine {
        engine: "sqlite",
        points: vec![histories::measure(&sqlite("history.db"), dir.path()).await?],
    });
    if let Some(pg) = &postgres {
        progress(&format!(
            "db-check of {} migrations, postgres",
            histories::MIGRATIONS
        ));
        let url = pg.create("history").await?;
        report.histories.push(Engine {
            engine: "postgres",
            points: vec![histories::measure(&url, dir.path()).await?],
        });
    }

    if let Some(pg) = postgres {
        pg.drop_all().await;
    }
    write_report(&report, &options.out)
}

async fn readiness_on(
    options: &Options,
    dir: &Path,
    ours: &str,
    anchor: &str,
) -> Result<Vec<readiness::ReadinessPoint>> {
    let ours = ServerProcess::start("server", dir, ours).await?;
    let anchor = ServerProcess::start("anchor", dir, anchor).await?;
    let (duration, rounds) = options.load();
    Ok(readiness::measure(&ours, &anchor, options.connections(), duration, rounds).await)
}

async fn app_on(
    options: &Options,
    dir: &Path,
    ours: &str,
    anchor: &str,
) -> Result<Vec<app::AppPoint>> {
    let ours = ServerProcess::start("notes", dir, ours).await?;
    let anchor = ServerProcess::start("anchor", dir, anchor).await?;
    let (connections, duration, rounds) = options.app_load();
    app::measure(&ours, &anchor, connections, duration, rounds).await
}

async fn sqlite_writes(options: &Options, dir: &Path) -> Result<Vec<WritePoint>> {
    let ours = writes::open_pool(
        &format!("sqlite://{}", dir.join("writes.db").display()),
        dir,
    )
    .await?;
    let naive = writes::open_sqlx_sqlite(&dir.join("writes-sqlx.db")).await?;
    let duration = options.write_duration();
    let mut points = Vec::new();
    for &n in options.writers() {
        let raw_one = writes::raw_sqlite(&dir.join("writes-raw-one.db"), 1, duration)?;
        let point = WritePoint {
            writers: n,
            ours: writes::through_pool(&ours, n, duration).await,
            sqlx_defaults: writes::through_sqlx(&naive, n, duration).await,
            raw: Some(writes::raw_sqlite(&dir.join("writes-raw.db"), n, duration)?),
            raw_one: Some(raw_one),
        };
        progress(&format!(
            "  {n:>3} writers: pool {:>7.0}/s  sqlx defaults {:>7.0}/s  raw {:>7.0}/s  raw one connection {:>7.0}/s",
            point.ours.per_sec,
            point.sqlx_defaults.per_sec,
            point.raw.as_ref().map_or(0.0, |r| r.per_sec),
            point.raw_one.as_ref().map_or(0.0, |r| r.per_sec),
        ));
        points.push(point);
    }
    ours.close().await;
    naive.close().await;
    Ok(points)
}

async fn pg_writes(
    options: &Options,
    dir: &Path,
    ours: &str,
    naive: &str,
) -> Result<Vec<WritePoint>> {
    let ours = writes::open_pool(ours, dir).await?;
    let naive = writes::open_sqlx_pg(naive).await?;
    let duration = options.write_duration();
    let mut points = Vec::new();
    for &n in options.writers() {
        let point = WritePoint {
            writers: n,
            ours: writes::through_pool(&ours, n, duration).await,
            sqlx_defaults: writes::through_sqlx(&naive, n, duration).await,
            raw: None,
            raw_one: None,
        };
        progress(&format!(
            "  {n:>3} writers: pool {:>7.0}/s  sqlx defaults {:>7.0}/s",
            point.ours.per_sec, point.sqlx_defaults.per_sec
        ));
        points.push(point);
    }
    ours.close().await;
    naive.close().await;
    Ok(points)
}

/// The PostgreSQL server the scenarios create their databases on.
struct Postgres {
    admin: url::Url,
    version: String,
    created: std::sync::Mutex<Vec<String>>,
}

impl Postgres {
    async fn connect(url: &str) -> Result<Self> {
        let admin = url::Url::parse(url).context("BENCH_POSTGRES_URL is not a URL")?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(3),
            sqlx::PgConnection::connect(admin.as_str()),
        )
        .await
        .context("no answer within 3 s")??;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok(Self {
            admin,
            version,
            created: Default::default(),
        })
    }

    /// Creates a database for one scenario; its URL.
    async fn create(&self, purpose: &str) -> Result<String> {
        let name = format!("bench_{}_{purpose}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(self.admin.as_str()).await?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        self.created.lock().expect("created").push(name.clone());
        let mut url = self.admin.clone();
        url.set_path(&name);
        Ok(url.to_string())
    }

    /// Drops every database [`Postgres::create`] made.
    async fn drop_all(&self) {
        let names = std::mem::take(&mut *self.created.lock().expect("created"));
        let Ok(mut conn) = sqlx::PgConnection::connect(self.admin.as_str()).await else {
            return;
        };
        for name in names {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
            {
                progress(&format!("warning: cannot drop database {name}: {e}"));
            }
        }
        let _ = conn.close().await;
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes the three files; `benchmarks.md` keeps everything outside its generated
/// section.
fn write_report(report: &Report, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    server::durable::write_file(&out.join("bench.json"), json.as_bytes())
        .with_context(|| format!("cannot write {}", out.join("bench.json").display()))?;
    report.plot(&out.join("bench.svg"))?;
    let doc = out.join("benchmarks.md");
    let old = std::fs::read_to_string(&doc).unwrap_or_default();
    let new = splice(&old, &report.markdown());
    server::durable::write_file(&doc, new.as_bytes())
        .with_context(|| format!("cannot write {}", doc.display()))?;
    {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{}", report.markdown());
    }
    progress(&format!(
        "wrote {0}/benchmarks.md, {0}/bench.json and {0}/bench.svg",
        out.display()
    ));
    Ok(())
}

const START: &str = "<!-- cargo xtask bench: start (generated, do not edit) -->";
const END: &str = "<!-- cargo xtask bench: end -->";

/// `doc` with its generated section replaced by `section` (appended when missing).
fn splice(doc: &str, section: &str) -> String {
    let block = format!("{START}\n{section}{END}");
    match (doc.find(START), doc.find(END)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{block}{}", &doc[..start], &doc[end + END.len()..])
        }
        _ if doc.is_empty() => format!("# Benchmarks\n\n{block}\n"),
        _ => format!("{}\n\n{block}\n", doc.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::{END, START, splice};

    #[test]
    fn the_generated_section_is_replaced_and_the_rest_kept() {
        let doc = format!("# B\n\nintro\n\n{START}\nold\n{END}\n\n## Other\n\nkept\n");
        let new = splice(&doc, "new\n");
        assert_eq!(
            new,
            format!("# B\n\nintro\n\n{START}\nnew\n{END}\n\n## Other\n\nkept\n")
        );
        assert_eq!(splice(&new, "new\n"), new, "idempotent");
    }

    #[test]
    fn a_document_without_the_section_gets_it_appended() {
        assert_eq!(
            splice("", "x\n"),
            format!("# Benchmarks\n\n{START}\nx\n{END}\n")
        );
        assert_eq!(
            splice("# Mine\n\n", "x\n"),
            format!("# Mine\n\n{START}\nx\n{END}\n")
        );
    }
}
