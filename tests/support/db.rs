//! Fresh databases for integration tests, one per test so tests never see each other's rows
//! and can run in parallel:
//! - SQLite: a new file in its own temporary directory, removed with the handle.
//! - PostgreSQL: a new database `grader_test_<uuid>` on the local server (admin URL from
//!   `GRADER_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`), dropped
//!   with the handle (`DROP DATABASE ... WITH (FORCE)`, also after a failed test).
//!
//! ```ignore
//! let db = TestDb::new(Backend::Postgres).await;   // migrated, `db.store` ready
//! std::env::set_var("GRADER_DATABASE_URL", &db.url); // or hand db.url to a `grader serve`
//! ```

use std::sync::Arc;

use grader::store::{self, Store};
use sqlx::Connection;

/// The admin connection used to create and drop test databases.
pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// A fresh, migrated database and a store opened on it. Dropping it deletes the database.
pub struct TestDb {
    pub backend: Backend,
    /// What `GRADER_DATABASE_URL` would be for this database.
    pub url: String,
    pub store: Arc<dyn Store>,
    // Dropped after `store` (declaration order), so the database outlives its pool.
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb::sqlite().await,
            Backend::Postgres => TestDb::postgres().await,
        }
    }

    /// A SQLite file `grader.db` in a new temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("grader.db").display());
        let store = store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        TestDb {
            backend: Backend::Sqlite,
            url,
            store,
            _dir: Some(dir),
            _pg: None,
        }
    }

    /// A new database on the local PostgreSQL server.
    pub async fn postgres() -> TestDb {
        let admin_url = pg_admin_url();
        let name = format!("grader_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL at {admin_url} ({e}); start it with \
                     `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     or set GRADER_TEST_PG_URL"
                )
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        // Owns the database from here on, so a panic below still drops it.
        let pg = PgDatabase {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let url = with_database(&admin_url, &name);
        let store = store::open(&url)
            .await
            .unwrap_or_else(|e| panic!("open {name}: {e}"));
        TestDb {
            backend: Backend::Postgres,
            url,
            store,
            _dir: None,
            _pg: Some(pg),
        }
    }

    /// A second, independent store on the same database: another process or replica, with
    /// its own connections.
    pub async fn open_another(&self) -> Arc<dyn Store> {
        store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }
}

/// `GRADER_TEST_PG_URL`, or the local server as user postgres.
pub fn pg_admin_url() -> String {
    std::env::var("GRADER_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_string())
}

/// `admin` with its database name replaced by `db` (query parameters kept).
pub fn with_database(admin: &str, db: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A test database on the server, dropped on drop.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, where we may not block on a future; a thread
        // with its own small runtime can. FORCE ends the store's remaining connections.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}
