"""The transaction simulator: Sparkov-layout days with realistic difficulty and scenario knobs."""
