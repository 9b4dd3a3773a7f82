//! The pool fairing (`rocket_db_pools`) and the migrations fairing that runs on ignite.

use std::sync::{Arc, Mutex};

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use rocket_db_pools::Database;

use crate::backup::Schedule;
use crate::config::DbSettings;
use crate::db::{DbConn, DbError, DbPool, OpenMode};
use crate::in_use::InUse;
use crate::migrations::{self, MigrationSet};

/// The application database; `Connection<Db>` is the request guard for a pooled connection.
#[derive(Database)]
#[database("main")]
pub struct Db(DbPool);

#[rocket::async_trait]
impl rocket_db_pools::Pool for DbPool {
    type Connection = DbConn;
    type Error = DbError;

    async fn init(figment: &Figment) -> Result<Self, Self::Error> {
        // AppConfig already resolved the URL to an absolute path; nothing relative is left.
        let settings = DbSettings::from_focused(figment, std::path::Path::new("."))
            .map_err(|e| DbError::Config(e.to_string()))?;
        // On failure the migrations stage opens it once more to say why (`migrate`).
        DbPool::open(&settings, OpenMode::Create).await
    }

    /// The `Connection<Db>` guard: a failure answers 503 before any handler runs, so it
    /// is counted here (`db_errors_total`), by the class a handler's error would have.
    async fn get(&self) -> Result<Self::Connection, Self::Error> {
        self.acquire_for_request().await.inspect_err(|e| {
            let class = match e {
                DbError::Driver(cause) => super::api::class_of(cause).2,
                _ => "unavailable",
            };
            self.metrics().error(class);
        })
    }

    async fn close(&self) {
        DbPool::close(self).await;
    }
}

/// The migrations the app applies on ignite and `/health/db` compares with, as the
/// configured engine runs them.
#[derive(Clone)]
pub struct Migrations(pub MigrationSet);

/// Handlers run queries on the request's connection: `query(…).fetch_one(&mut db)`.
impl crate::db::RunsQueries for rocket_db_pools::Connection<Db> {
    fn runner(&mut self) -> crate::db::Runner<'_> {
        (**self).runner()
    }
}

/// Maintenance code takes the request's connection too (`schema::read(db.target())`).
impl crate::db::Executor for rocket_db_pools::Connection<Db> {
    fn target(&mut self) -> crate::db::Target<'_> {
        (**self).target()
    }
}

/// Attaches the pool, then applies (or checks) `migrations` before the server listens.
pub fn stage(settings: DbSettings, migrations: &MigrationSet) -> AdHoc {
    let migrations = migrations.for_engine(settings.url.kind());
    AdHoc::on_ignite("Database", move |rocket| async move {
        let rocket = rocket
            .manage(settings.clone())
            .manage(Migrations(migrations))
            .attach(Db::init())
            .attach(AdHoc::try_on_ignite("Database migrations", migrate));
        let schedule = settings
            .backup_interval
            .map(|interval| Arc::new(Schedule::new(interval)));
        let rocket = rocket.manage(Backups(schedule.clone()));
        match schedule {
            Some(_) => rocket.attach(AdHoc::on_liftoff("Scheduled backups", |rocket| {
                Box::pin(start_backups(rocket))
            })),
            None => rocket,
        }
    })
}

/// The backup schedule, when `backup_interval_secs` is set (always managed, so that
/// routes can ask for it).
pub struct Backups(pub Option<Arc<Schedule>>);

/// Starts the backup schedule once the server listens, on its own task: no request
/// waits for it.
async fn start_backups(rocket: &Rocket<rocket::Orbit>) {
    let (Some(Backups(Some(schedule))), Some(db), Some(settings), Some(Migrations(set))) = (
        rocket.state::<Backups>(),
        rocket.state::<Db>(),
        rocket.state::<DbSettings>(),
        rocket.state::<Migrations>(),
    ) else {
        return;
    };
    let (schedule, mut pool, settings) = (Arc::clone(schedule), (**db).clone(), settings.clone());
    let set = set.clone();
    // Behind a pooler in transaction mode, pg_dump and its snapshot take the direct
    // connection (`migrate_url`): a pool of their own.
    let settings = match settings.migrate_url {
        Some(_) => match DbPool::open(&settings.maintenance(), OpenMode::MustExist).await {
            Ok(direct) => {
                pool = direct;
                settings.direct()
            }
            Err(e) => {
                rocket::error!("scheduled backups: cannot open migrate_url: {e}");
                return;
            }
        },
        None => settings,
    };
    rocket::info!(
        "scheduled backups every {} s into {}",
        schedule.interval_secs(),
        settings.backup_dir.display()
    );
    let stop = rocket.shutdown();
    tokio::spawn(async move { schedule.run(pool, settings, set, stop).await });
}

async fn migrate(rocket: Rocket<Build>) -> rocket::fairing::Result {
    let (Some(settings), Some(Migrations(set))) =
        (rocket.state::<DbSettings>(), rocket.state::<Migrations>())
    else {
        return Err(rocket);
    };
    let failed = |reason: String| {
        if let Some(slot) = rocket.state::<LaunchFailure>() {
            slot.set(reason);
        }
    };
    let Some(db) = rocket.state::<Db>() else {
        // The pool fairing failed (rocket_db_pools keeps its error): open the pool once
        // more to say why, and where the URL came from.
        if let Err(e) = DbPool::open(settings, OpenMode::Create).await {
            failed(format!("{e} (databases.main.url {})", settings.url_origin));
        }
        return Err(rocket);
    };
    rocket::info!("database: {} ({})", settings.url, settings.url_origin);
    match prepare(db, settings, set).await {
        Ok(Some(claim)) => Ok(rocket.manage(claim)),
        Ok(None) => Ok(rocket),
        Err(e) => {
            rocket::error!("database: {e}");
            failed(e.to_string());
            Err(rocket)
        }
    }
}

/// Why the database stage stopped this rocket's launch, for its `main` to report on
/// stderr: managed from the start (`rocket_with`), so `main` holds it before ignite.
#[derive(Debug, Clone, Default)]
pub struct LaunchFailure(Arc<Mutex<Option<String>>>);

impl LaunchFailure {
    fn set(&self, reason: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// The reason, if the database stage stopped the launch.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Claims a SQLite file for this server, then migrates (or only checks) the schema.
async fn prepare(
    db: &Db,
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<Option<InUse>, StartupError> {
    let claim = settings
        .url
        .sqlite_path()
        .map(crate::in_use::claim_for_server)
        .transpose()?;
    set.ensure_valid()?;
    // Behind a pooler in transaction mode, migrations take the direct connection.
    let direct = match settings.migrate_url {
        Some(_) => {
            let direct = settings.maintenance();
            let opened = DbPool::open(&direct, OpenMode::MustExist).await;
            Some(opened.map_err(|source| StartupError::Direct {
                source,
                origin: direct.url_origin,
            })?)
        }
        None => None,
    };
    let result = prepare_on(direct.as_ref().unwrap_or(&**db), settings, set).await;
    if let Some(direct) = direct {
        direct.close().await;
    }
    result.map(|()| claim)
}

/// Migrates (or only checks) the schema on `pool`.
async fn prepare_on(
    pool: &DbPool,
    settings: &DbSettings,
    set: &MigrationSet,
) -> Result<(), StartupError> {
    let mut conn = pool.acquire().await?;
    let status = migrations::status(&mut conn, set).await?;
    // An older release during a rolling deploy: the newer one migrated ahead of it.
    if settings.serve_newer_schema && status.ahead_by_newer_only(set) {
        rocket::warn!(
            "the database is at version {}, ahead of this binary's V{}: a newer release migrated it; serving with the schema as it is",
            status.applied.last().map_or(0, |a| a.version),
            set.latest()
        );
        return Ok(());
    }
    if settings.migrate_on_start {
        for id in migrations::upgrade(&mut conn, set, None).await?.changed {
            rocket::info!("applied migration {id}");
        }
    } else {
        status.ensure_compatible()?;
    }
    Ok(())
}

/// Why the server refuses to start.
#[derive(Debug, thiserror::Error)]
enum StartupError {
    #[error(transparent)]
    InUse(#[from] crate::in_use::InUseError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The direct connection (`migrate_url`) could not be opened.
    #[error("{source} (databases.main.{origin})")]
    Direct { source: DbError, origin: String },
    #[error(transparent)]
    Migration(#[from] migrations::MigrationError),
}
