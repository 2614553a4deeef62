//! The AWS adapters against moto's server, over HTTP with the real SDK: each port's contract as
//! `casesync_core::memory::MemoryStore` states it, plus what only DynamoDB, Secrets Manager and
//! SQS make hard (conditional writes, races, item sizes, batch call counts, FIFO
//! deduplication).
//!
//! One test binary, one moto server for all of it (or `CASESYNC_TEST_MOTO_URL`'s); each test
//! makes its own uniquely named tables, queue and secret prefix.

mod auth_states;
mod common;
mod connections;
mod data_points;
mod errors;
mod fixture;
mod queue;
mod secrets;
