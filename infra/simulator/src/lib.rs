//! A Salesforce simulator speaking the real REST and OAuth wire formats on loopback (scaffold: filled in by its issue).
