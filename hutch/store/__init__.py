"""Persistence: the original Hutch tables, engines, and services owning transactions."""
