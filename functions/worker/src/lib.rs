//! Lambda: syncs the connection named by each SQS message (scaffold: filled in by its issue).
