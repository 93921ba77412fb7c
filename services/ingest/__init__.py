"""The ingest service: validates events, quarantines bad rows, batches the rest."""
