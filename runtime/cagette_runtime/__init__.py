"""Shared runtime of the Cagette services, written once: settings, database, outbox, inbox,
topology, logging, HTTP conventions, auth and the service bootstrap."""
