"""Database layer: models, engine construction, dialect specifics and migrations."""
