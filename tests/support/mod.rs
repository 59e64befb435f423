//! Shared test support for every integration test (`mod support;`). Each test binary uses a
//! different subset, so unused items are expected here.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod browser;
pub mod db;
pub mod standin;

pub use standin::{Recorded, Scripted, StandIn};
pub mod fixtures;
