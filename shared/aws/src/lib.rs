//! casesync adapters for AWS: DynamoDB stores, Secrets Manager, SQS (scaffold: filled in by its issue).
