//! casesync adapters for one machine: SQLite stores, a 0600 secrets file, an in-process work queue (scaffold: filled in by its issue).
