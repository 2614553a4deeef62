//! Black-box integration tests of casesync over real wire protocols (scaffold: filled in by its issue).
