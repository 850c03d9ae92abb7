"""What differs between SQLite and PostgreSQL, one module each."""
