//! Lambda: fans out one SQS message per active connection (scaffold: filled in by its issue).
