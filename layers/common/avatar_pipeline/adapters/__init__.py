"""I/O behind small classes: S3, DynamoDB, SNS, Step Functions, Secrets Manager, HTTP downloads."""
