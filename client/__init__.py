"""The client: parsing, sessions, gRPC inference, detection decisions, alerts, CLI."""
