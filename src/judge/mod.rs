//! The grading pipeline: render, call, validate, repair, verify evidence, aggregate, and
//! compute in code what must never be taken from the model's words.

pub mod derive;
pub mod evidence;
pub mod judgment;
pub mod offline;
pub mod pipeline;
pub mod validate;

pub use judgment::{JudgedFlag, JudgedScore, Judgment};
