//! Lambda: the management API for connections (scaffold: filled in by its issue).
