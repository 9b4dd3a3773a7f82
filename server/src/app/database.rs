//! The pool fairing (`rocket_db_pools`) and the migrations fairing that runs on ignite.

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::{Build, Rocket};
use rocket_db_pools::Database;

use crate::config::DbSettings;
use crate::db::{DbConn, DbError, DbPool, OpenMode};
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
        // The URL was resolved to an absolute path when the configuration was loaded.
        let settings = DbSettings::from_focused(figment, std::path::Path::new("/"))
            .map_err(|e| DbError::Config(e.to_string()))?;
        DbPool::open(&settings, OpenMode::Create).await
    }

    async fn get(&self) -> Result<Self::Connection, Self::Error> {
        self.acquire().await
    }

    async fn close(&self) {
        DbPool::close(self).await;
    }
}

/// Attaches the pool, then applies (or checks) migrations before the server listens.
pub fn stage(settings: DbSettings) -> AdHoc {
    AdHoc::on_ignite("Database", |rocket| async move {
        rocket
            .manage(settings)
            .attach(Db::init())
            .attach(AdHoc::try_on_ignite("Database migrations", migrate))
    })
}

async fn migrate(rocket: Rocket<Build>) -> rocket::fairing::Result {
    // Without a pool the pool fairing has already failed the launch and said why.
    let (Some(db), Some(settings)) = (rocket.state::<Db>(), rocket.state::<DbSettings>()) else {
        return Err(rocket);
    };
    let set = MigrationSet::embedded();
    let result = async {
        let mut conn = db.acquire().await?;
        if settings.migrate_on_start {
            let outcome = migrations::upgrade(&mut conn, set, None).await?;
            for id in &outcome.changed {
                rocket::info!("applied migration {id}");
            }
        } else {
            migrations::status(&mut conn, set).await?.ensure_compatible()?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    match result {
        Ok(()) => Ok(rocket),
        Err(e) => {
            rocket::error!("database migrations: {e}");
            Err(rocket)
        }
    }
}
