"""Cloud sync: de-identification, batching into Bundles, the cloud client. Not implemented yet."""
