"""From landing files to validated partitions: the schema and reader, the quality suite, quarantine, labels."""
