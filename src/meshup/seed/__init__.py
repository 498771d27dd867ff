"""Seed files: validation (schema) and application to the database (apply)."""
