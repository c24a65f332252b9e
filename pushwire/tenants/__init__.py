"""Tenants, apps and their keys: services used by the CLI, the API and the console."""
