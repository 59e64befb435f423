//! grader: grades LLM-engineer interview transcripts and written answers with versioned LLM
//! judges. See ARCHITECTURE.md for the module map and the invariants.

pub mod budget;
pub mod cache;
pub mod calibration;
pub mod cli;
pub mod config;
pub mod domain;
pub mod evals;
pub mod fairness;
pub mod guard;
pub mod http;
pub mod ingest;
pub mod judge;
pub mod llm;
pub mod metrics;
pub mod prompts;
pub mod service;
pub mod store;
pub mod web;
