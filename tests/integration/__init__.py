"""Integration tests against real outside programs (an identity provider, `hutch serve`)."""
