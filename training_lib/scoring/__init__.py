"""Nightly batch scoring with the champion: plan, shards, atomic commit."""
