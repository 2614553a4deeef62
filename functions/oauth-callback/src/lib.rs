//! Lambda: completes the Salesforce OAuth flow (scaffold: filled in by its issue).
