//! `casesync` end to end: the built binary against the Salesforce simulator over HTTP, each test
//! in its own temp data dir. One test binary (linking is the slow part of a build).

mod bad_input;
mod concurrency;
mod connect;
mod demo;
mod doctor;
mod export;
mod lifecycle;
mod secrets;
mod support;
mod sync;
mod ui;
