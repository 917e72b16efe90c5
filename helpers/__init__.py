"""The book helpers."""
