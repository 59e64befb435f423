//! Shared test support for every integration test (`mod support;`). Each test binary uses a
//! different subset, so unused items are expected here.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod browser;
pub mod db;
pub mod process;
pub mod standin;

pub use standin::{Recorded, Scripted, StandIn};
pub mod fixtures;

/// Runs each named `async fn(Backend)` of a test file as two tests, `<name>::sqlite` and
/// `<name>::postgres`: every store-backed behaviour is checked on both databases.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::support::db::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(Backend::Postgres).await;
            }
        }
    )*};
}
